"""A DSO's aggregated offer at its interface, and from an aggregated dispatch back to bids.

The offer has the columns of :data:`market_sim.markets.offers.OFFER_COLUMNS`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.markets.devices import device_of
from market_sim.markets.offers import OFFER_COLUMNS
from market_sim.types import DIRECTIONS


def aggregate_offer(validated: pd.DataFrame, interface_bus: int, first_id: int) -> pd.DataFrame:
    """A DSO's aggregated offer: a price-quantity curve per direction at its interface.

    Validated bids with the same direction and price are one step of the curve; the steps are in
    merit order (cheapest first). Step ids start at ``first_id`` so that DSOs do not clash.
    """
    kept = validated[validated.mw > 1e-9]
    curve = (
        kept.groupby(["direction", "price_eur_per_mwh"], observed=True, sort=True)["mw"]
        .sum()
        .reset_index()
    )
    curve.insert(0, "offer_id", np.arange(first_id, first_id + len(curve), dtype=np.int64))
    curve.insert(1, "bus", np.int64(interface_bus))
    curve["direction"] = curve.direction.astype(str)
    return curve[list(OFFER_COLUMNS)]


def disaggregate(validated: pd.DataFrame, target_mw: dict[str, float]) -> pd.DataFrame:
    """Meet an aggregated dispatch with individual bids at least cost (merit order).

    ``target_mw`` is the dispatched MW per direction. Returns ``bid_id`` and dispatched ``mw``
    for every validated bid (zero where not used). Ties in price go to the lower bid id, so the
    result is deterministic. A device's up and down bids are mutually exclusive: the larger
    target is met first, and the other direction uses no device already used (the TSO, seeing
    only the curves, may take both directions of a DSO). A bid standing in for one so excluded
    asks no more than the dearest step the TSO took (so the price it clears at pays it); what
    cannot be met is a shortfall.
    """
    parts, used = {}, np.zeros(0, dtype=np.int64)
    for direction in sorted(DIRECTIONS, key=lambda d: -target_mw.get(d, 0.0)):
        mine = validated[(validated.direction == direction) & (validated.mw > 1e-9)]
        mine = mine.sort_values(["price_eur_per_mwh", "bid_id"], kind="stable")
        need = max(0.0, target_mw.get(direction, 0.0))
        offered, price = mine.mw.to_numpy(), mine.price_eur_per_mwh.to_numpy()
        taken = np.clip(need - (np.cumsum(offered) - offered), 0.0, offered) > 1e-9
        cap = price[taken].max() if taken.any() else -np.inf  # the dearest step taken
        excluded = np.isin(device_of(mine.bid_id), used) | (price > cap)
        free = np.where(excluded, 0.0, offered)
        mw = np.clip(need - (np.cumsum(free) - free), 0.0, free)
        parts[direction] = pd.DataFrame({"bid_id": mine.bid_id.to_numpy(np.int64), "mw": mw})
        used = np.r_[used, device_of(mine.bid_id[mw > 1e-9])]
    return pd.concat([parts[d] for d in DIRECTIONS], ignore_index=True)
