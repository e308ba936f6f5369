"""Invariants of a period's dispatch: no wash trades, and individual rationality.

Pure functions over the period's ``dispatch`` table (:data:`market_sim.tables.TABLES`), each
returning the violated invariants as one message per offending row or device (empty: all
hold), so that a test, a debug run or another stage can call them after every period.

* **No wash trades**: a device offers an up bid (bid id ``2r``) and a down bid (``2r + 1``);
  they are mutually exclusive, since accepting both moves the device by their difference while
  paying for their sum. :func:`wash_trades` lists every device dispatched both ways in a period
  (whoever the buyers).
* **Individual rationality**: no accepted offer is paid less per MWh of service than it asked,
  judged on its payment (under pay-as-clear an up activation is paid the price of injection, a
  down activation pays it back, see :mod:`market_sim.markets.settlement`; pay-as-bid and a
  DSO's purchase pay the ask).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Below this (EUR/MWh) a price under the ask is solver noise (HiGHS' dual tolerance, 1e-7,
#: times the sensitivities of the distribution rows).
PRICE_TOL_EUR_PER_MWH = 1e-5

#: Below this (MW) an activation is solver noise.
DISPATCH_TOL_MW = 1e-7


def device_of(bid_id: pd.Series | np.ndarray) -> np.ndarray:
    """The device (prosumer book row) of each bid: bid ids ``2r`` (up) and ``2r + 1`` (down)."""
    return np.asarray(bid_id, dtype=np.int64) // 2


def paid_per_mwh(dispatch: pd.DataFrame, hours: float) -> np.ndarray:
    """What each row is paid per MWh of its service (EUR/MWh), whatever the pricing rule: its
    payment over the energy dispatched (a down activation's payment is already the service's)."""
    energy = dispatch.mw.to_numpy(float) * hours
    return dispatch.payment_eur.to_numpy(float) / np.where(energy > 0, energy, np.nan)


def below_ask(dispatch: pd.DataFrame, hours: float) -> list[str]:
    """Accepted rows paid less per MWh of service than their ask (individual rationality).

    ``hours``: the period's length, which turns the rows' MW into the MWh they are paid for.
    """
    rows = dispatch[dispatch.mw.to_numpy(float) > DISPATCH_TOL_MW]
    paid = paid_per_mwh(rows, hours)
    short = paid < rows.bid_price_eur_per_mwh.to_numpy(float) - PRICE_TOL_EUR_PER_MWH
    return [
        f"period {r.period}: {r.resource} {r.id} ({r.direction}, {r.mw:.4g} MW for {r.buyer}) "
        f"paid {p:.6g} EUR/MWh, asked {r.bid_price_eur_per_mwh:.6g}"
        for r, p in zip(rows[short].itertuples(), paid[short], strict=True)
    ]


def wash_trades(dispatch: pd.DataFrame) -> list[str]:
    """Devices dispatched up and down in the same period (by one buyer or two)."""
    der = dispatch[(dispatch.resource == "der") & (dispatch.mw > DISPATCH_TOL_MW)]
    der = der.assign(device=device_of(der.id))
    both = der.groupby(["period", "dso", "device"]).filter(lambda g: g.direction.nunique() > 1)
    return [
        f"period {period}: device {device} of {dso} dispatched "
        + ", ".join(f"{r.direction} {r.mw:.4g} MW for {r.buyer}" for r in g.itertuples())
        for (period, dso, device), g in both.groupby(["period", "dso", "device"])
    ]


def dispatch_violations(dispatch: pd.DataFrame, hours: float) -> list[str]:
    """Every violated invariant of a dispatch table (one or more periods of ``hours``)."""
    return wash_trades(dispatch) + below_ask(dispatch, hours)


def washed_devices(device: np.ndarray, is_up: np.ndarray, mw: np.ndarray) -> np.ndarray:
    """Offers of devices with both an up and a down offer above :data:`DISPATCH_TOL_MW` (a
    boolean mask over the offers; ``device`` is -1 for offers of no device)."""
    device = np.asarray(device)
    used = (device >= 0) & (np.asarray(mw, float) > DISPATCH_TOL_MW)
    up = np.unique(device[used & is_up])
    down = np.unique(device[used & ~is_up])
    return (device >= 0) & np.isin(device, np.intersect1d(up, down))


def partner_used(
    bid_id: pd.Series | np.ndarray, is_up: np.ndarray, used_mw: np.ndarray
) -> np.ndarray:
    """Whether each bid's device is used (above :data:`DISPATCH_TOL_MW`) in the other
    direction, by any of the bids ``bid_id`` (``is_up`` and ``used_mw`` aligned with them)."""
    device = device_of(bid_id)
    used = np.asarray(used_mw, float) > DISPATCH_TOL_MW
    up, down = np.unique(device[used & is_up]), np.unique(device[used & ~is_up])
    return np.where(is_up, np.isin(device, down), np.isin(device, up))
