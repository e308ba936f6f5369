"""A device's two bids: which offers belong together, and which a clearing used both ways.

A device offers an up bid (bid id ``2r``) and a down bid (``2r + 1``). They are mutually
exclusive: accepting both moves the device by their difference while paying for their sum (a
wash trade), which an LP does whenever the two asks sum to less than zero. The clearings (the
balancing market, the DSOs' least-cost use, the sharing between the TSO and the DSOs, the
disaggregation of a DSO's curves) keep them exclusive with these helpers; the invariant over a
period's dispatch table is :func:`market_sim.invariants.no_wash_trades`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Below this (MW) an activation is solver noise.
DISPATCH_TOL_MW = 1e-7


def device_of(bid_id: pd.Series | np.ndarray) -> np.ndarray:
    """The device (prosumer book row) of each bid: bid ids ``2r`` (up) and ``2r + 1`` (down)."""
    return np.asarray(bid_id, dtype=np.int64) // 2


def washed_devices(device: np.ndarray, is_up: np.ndarray, mw: np.ndarray) -> np.ndarray:
    """Offers of devices with both an up and a down offer above :data:`DISPATCH_TOL_MW` (a
    boolean mask over the offers; ``device`` is -1 for offers of no device)."""
    device = np.asarray(device)
    known = device >= 0
    used = known & (np.asarray(mw, float) > DISPATCH_TOL_MW)
    # a flag per device number (a period's offers name a few hundred devices): two sorts, an
    # intersection and a membership test cost five times as much
    flags = np.zeros((2, int(device.max(initial=0)) + 1), dtype=bool)
    flags[0, device[used & is_up]] = True
    flags[1, device[used & ~is_up]] = True
    return known & np.logical_and(*flags)[np.where(known, device, 0)]


def partner_used(
    bid_id: pd.Series | np.ndarray, is_up: np.ndarray, used_mw: np.ndarray
) -> np.ndarray:
    """Whether each bid's device is used (above :data:`DISPATCH_TOL_MW`) in the other
    direction, by any of the bids ``bid_id`` (``is_up`` and ``used_mw`` aligned with them)."""
    device = device_of(bid_id)
    used = np.asarray(used_mw, float) > DISPATCH_TOL_MW
    up, down = np.unique(device[used & is_up]), np.unique(device[used & ~is_up])
    return np.where(is_up, np.isin(device, down), np.isin(device, up))
