"""A DSO's aggregated offer at its interface, and from an aggregated dispatch back to bids.

The offer has the columns of :data:`market_sim.markets.offers.OFFER_COLUMNS`, in their order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.markets.devices import device_of
from market_sim.markets.group_sum import group_sum
from market_sim.types import DIRECTIONS


def aggregate_offer(validated: pd.DataFrame, interface_bus: int, first_id: int) -> pd.DataFrame:
    """A DSO's aggregated offer: a price-quantity curve per direction at its interface.

    Validated bids with the same direction and price are one step of the curve; the steps are in
    merit order (cheapest first). Step ids start at ``first_id`` so that DSOs do not clash.
    """
    # numpy columns: a groupby on (direction, price) of a few hundred bids costs ~1 ms
    mw, price = validated.mw.to_numpy(float), validated.price_eur_per_mwh.to_numpy(float)
    kept = (mw > 1e-9) & ~np.isnan(price)  # a bid without a price is on no step
    directions, direction_code = np.unique(
        validated.direction.to_numpy(object)[kept], return_inverse=True
    )
    prices, price_code = np.unique(price[kept], return_inverse=True)
    # a step per (direction, price), sorted by direction, then price
    step, step_mw = group_sum(direction_code * len(prices) + price_code, mw[kept])
    n = len(step)
    return pd.DataFrame(
        {
            "offer_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "bus": np.full(n, interface_bus, dtype=np.int64),
            "direction": directions[step // len(prices)] if n else directions,
            "mw": step_mw,
            "price_eur_per_mwh": prices[step % len(prices)] if n else prices,
        }  # in the order of OFFER_COLUMNS
    )


def disaggregate(
    validated: pd.DataFrame, target_mw: dict[str, float], buyer: str = "tso"
) -> pd.DataFrame:
    """Meet an aggregated dispatch with individual bids at least cost (merit order).

    ``target_mw`` is the dispatched MW per direction, bought by ``buyer``. Returns ``bid_id``,
    dispatched ``mw`` and ``buyer`` for every validated bid (zero MW where not used). Ties in
    price go to the lower bid id, so the result is deterministic. A device's up and down bids
    are mutually exclusive: the larger target is met first, and the other direction uses no
    device already used (the TSO, seeing only the curves, may take both directions of a DSO).
    A bid standing in for one so excluded asks no more than the dearest step the TSO took (so
    the price it clears at pays it); what cannot be met is a shortfall.
    """
    # numpy columns: a DSO has a few hundred bids, where pandas' cost per operation dominates
    direction_of = validated.direction.to_numpy(object)
    bid_of, mw_of = validated.bid_id.to_numpy(np.int64), validated.mw.to_numpy(float)
    price_of = validated.price_eur_per_mwh.to_numpy(float)
    parts, used = {}, np.zeros(0, dtype=np.int64)
    for direction in sorted(DIRECTIONS, key=lambda d: -target_mw.get(d, 0.0)):
        rows = np.flatnonzero((direction_of == direction) & (mw_of > 1e-9))
        rows = rows[np.lexsort((bid_of[rows], price_of[rows]))]  # by price, then bid id
        bid_id, offered, price = bid_of[rows], mw_of[rows], price_of[rows]
        need = max(0.0, target_mw.get(direction, 0.0))
        taken = np.clip(need - (np.cumsum(offered) - offered), 0.0, offered) > 1e-9
        cap = price[taken].max() if taken.any() else -np.inf  # the dearest step taken
        excluded = np.isin(device_of(bid_id), used) | (price > cap)
        free = np.where(excluded, 0.0, offered)
        mw = np.clip(need - (np.cumsum(free) - free), 0.0, free)
        parts[direction] = (bid_id, mw)
        used = np.r_[used, device_of(bid_id[mw > 1e-9])]
    bid_id = np.concatenate([parts[d][0] for d in DIRECTIONS])
    return pd.DataFrame(
        {
            "bid_id": bid_id,
            "mw": np.concatenate([parts[d][1] for d in DIRECTIONS]),
            "buyer": np.full(len(bid_id), buyer, dtype=object),
        }
    )


def accepted_steps(offer: pd.DataFrame, accepted: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Direction and accepted MW of each step of a DSO's curve that the TSO accepted, in the
    curve's order (what an inner merge of the curve with ``accepted`` on offer_id gives)."""
    at = pd.Index(accepted.offer_id).get_indexer(offer.offer_id.to_numpy(np.int64))
    steps = np.flatnonzero(at >= 0)
    mw = accepted.mw.to_numpy(float)[at[steps]]
    return offer.direction.to_numpy(object)[steps], mw


def target_by_direction(offer: pd.DataFrame, accepted: pd.DataFrame) -> dict[str, float]:
    """The TSO's aggregated dispatch of a DSO's curve per direction (MW), the compensated sum
    of a groupby (:func:`~market_sim.markets.group_sum.group_sum`) as it has always been."""
    direction, mw = accepted_steps(offer, accepted)
    directions, code = np.unique(direction, return_inverse=True)
    steps, total = group_sum(code, mw)
    return {str(directions[s]): float(t) for s, t in zip(steps, total, strict=True)}
