"""The offer book of the balancing market: what an offer is and where offers come from.

An offer table has the columns :data:`OFFER_COLUMNS`: ``offer_id``, ``bus`` (transmission bus),
``direction`` (up = more injection), ``mw`` (>= 0) and ``price_eur_per_mwh``. Transmission
energy resources (the scheduled generators) offer their balancing range with negative ids
(:func:`ter_offers`, which also carry their ``element``); DER bids become offers at their DSO's
interface bus with their bid id (:func:`bid_offers`), so that TER and DER offers can simply be
concatenated into one book.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from market_sim.markets.devices import device_of
from market_sim.types import DOWN, UP

if TYPE_CHECKING:
    from market_sim.markets.schedule import ScheduleResult
    from market_sim.markets.transmission import TransmissionNetwork

logger = logging.getLogger(__name__)

OFFER_COLUMNS = ("offer_id", "bus", "direction", "mw", "price_eur_per_mwh")

#: Quantities below this (MW) are solver noise: not offered, and reported as not accepted.
MW_TOL = 1e-7

#: Segments of a generator's balancing range per direction when its cost is quadratic.
TER_SEGMENTS = 4


def empty_offers() -> pd.DataFrame:
    """An offer table with no rows."""
    return pd.DataFrame(
        {
            "offer_id": pd.Series(dtype="int64"),
            "bus": pd.Series(dtype="int64"),
            "direction": pd.Series(dtype=object),
            "mw": pd.Series(dtype=float),
            "price_eur_per_mwh": pd.Series(dtype=float),
        }
    )


def bid_offers(bids: pd.DataFrame, interface_bus: dict[str, int]) -> pd.DataFrame:
    """Each (validated) bid as an offer at the interface bus of its DSO; offer_id = bid_id.

    ``bids`` holds the quantity to offer in ``mw`` (the validated MW where bids were validated);
    bids of no MW (at most 1e-9) are left out. ``device``: the device of the bid, whose up and
    down offers the clearing never accepts together
    (:func:`~market_sim.markets.devices.device_of`). The columns are selected as arrays before
    the table is built: the TSO makes this book at every clearing.
    """
    keep = bids["mw"].to_numpy(float) > 1e-9
    bid_id = bids["bid_id"].to_numpy(np.int64)[keep]
    dso = bids["dso"].to_numpy()[keep]
    return pd.DataFrame(
        {
            "offer_id": bid_id,
            "bus": np.fromiter((interface_bus[d] for d in dso), np.int64, len(dso)),
            "direction": bids["direction"].to_numpy(object)[keep],
            "mw": bids["mw"].to_numpy(float)[keep],
            "price_eur_per_mwh": bids["price_eur_per_mwh"].to_numpy(float)[keep],
            "device": device_of(bid_id),
        }
    )


def ter_offers(
    network: TransmissionNetwork,
    schedule: ScheduleResult,
    ramp_mw: np.ndarray | float,
    segments: int = TER_SEGMENTS,
) -> pd.DataFrame:
    """Balancing offers of the transmission energy resources (the scheduled generators).

    Up: ``min(p_max - p_sched, ramp)`` MW, down: ``min(p_sched - p_min, ramp)`` MW, each split
    into ``segments`` equal steps priced at the marginal cost ``c1 + 2 c2 p`` at the step's
    midpoint (minus that for down: a generator moved down saves fuel and so pays the TSO). The
    piecewise-linear offer is the quadratic cost curve itself: for every whole step, price times
    MW equals the exact cost change ``C(p1) - C(p0)``. Generators with linear cost offer one
    step. ``ramp_mw`` is per generator (aligned with ``network.generators``) or one value for
    all. offer_id of generator i, step j: ``-(2 (segments i + j) + 1)`` up and ``... + 2)``
    down: negative, so never clashing with DER bid ids, and stable across periods. Offers with
    zero MW are left out. Columns: offer_id, element, bus, direction, mw, price_eur_per_mwh.
    """
    gen = network.generators
    if not schedule.ok:
        logger.warning("no TER offers: the schedule failed (%s)", schedule.message)
        return _ter_frame([], [], [], [], [], [])
    p = schedule.gen_mw.reindex(pd.Index(gen["element"])).to_numpy(dtype=float)
    ramp = np.broadcast_to(np.asarray(ramp_mw, dtype=float), p.shape)
    c1, c2 = gen["c1_eur_per_mwh"].to_numpy(), gen["c2_eur_per_mw2h"].to_numpy()
    up = np.clip(np.minimum(gen["p_max_mw"].to_numpy() - p, ramp), 0.0, None)
    down = np.clip(np.minimum(p - gen["p_min_mw"].to_numpy(), ramp), 0.0, None)
    steps = np.where(c2 != 0.0, segments, 1)
    i = np.repeat(np.arange(len(gen)), steps)
    j = np.concatenate([np.arange(k) for k in steps])
    k = steps[i]
    mid_up = p[i] + (j + 0.5) * up[i] / k
    mid_down = p[i] - (j + 0.5) * down[i] / k
    ids = np.concatenate([-(2 * (segments * i + j) + 1), -(2 * (segments * i + j) + 2)])
    element = np.concatenate([gen["element"].to_numpy()[i]] * 2)
    bus = np.concatenate([gen["bus"].to_numpy()[i]] * 2)
    direction = np.array([UP] * len(i) + [DOWN] * len(i))
    mw = np.concatenate([up[i] / k, down[i] / k])
    price = np.concatenate([c1[i] + 2.0 * c2[i] * mid_up, -(c1[i] + 2.0 * c2[i] * mid_down)])
    keep = mw > MW_TOL
    order = np.argsort(-ids[keep], kind="stable")
    return _ter_frame(
        ids[keep][order],
        element[keep][order],
        bus[keep][order],
        direction[keep][order],
        mw[keep][order],
        price[keep][order],
    )


def _ter_frame(ids, element, bus, direction, mw, price) -> pd.DataFrame:
    """The TER offer table (numbers as numpy arrays, names as string arrays: the table is
    built every period, and a pandas array per numeric column cost more than the offers)."""
    return pd.DataFrame(
        {
            "offer_id": np.asarray(ids, dtype=np.int64),
            "element": pd.array(element, dtype="string"),
            "bus": np.asarray(bus, dtype=np.int64),
            "direction": pd.array(direction, dtype="string"),
            "mw": np.asarray(mw, dtype=float),
            "price_eur_per_mwh": np.asarray(price, dtype=float),
        },
        copy=False,
    )
