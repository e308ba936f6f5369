"""A DSO's aggregated offer at its interface, and from an aggregated dispatch back to bids.

The offer has the columns of :data:`market_sim.markets.offers.OFFER_COLUMNS`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.markets.offers import OFFER_COLUMNS
from market_sim.types import DIRECTIONS


def aggregate_offer(validated: pd.DataFrame, interface_bus: int, first_id: int) -> pd.DataFrame:
    """A DSO's aggregated offer: a price-quantity curve per direction at its interface.

    Validated bids with the same direction and price are one step of the curve; the steps are in
    merit order (cheapest first). Step ids start at ``first_id`` so that DSOs do not clash. The
    interface is one ``device`` (numbered ``first_id``) to the TSO's clearing: it takes the up
    or the down curve, never both, since accepting both only moves injections inside the DSO's
    network against each other (a wash trade, however the DSO disaggregates it).
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
    return curve[list(OFFER_COLUMNS)].assign(device=np.int64(first_id))


def disaggregate(validated: pd.DataFrame, target_mw: dict[str, float]) -> pd.DataFrame:
    """Meet an aggregated dispatch with individual bids at least cost (merit order).

    ``target_mw`` is the dispatched MW per direction. Returns ``bid_id`` and dispatched ``mw``
    for every validated bid (zero where not used). Ties in price go to the lower bid id, so the
    result is deterministic.
    """
    parts = []
    for direction in DIRECTIONS:
        mine = validated[(validated.direction == direction) & (validated.mw > 1e-9)]
        mine = mine.sort_values(["price_eur_per_mwh", "bid_id"], kind="stable")
        need = max(0.0, target_mw.get(direction, 0.0))
        before = mine.mw.cumsum().to_numpy() - mine.mw.to_numpy()
        mw = np.clip(need - before, 0.0, mine.mw.to_numpy())
        parts.append(pd.DataFrame({"bid_id": mine.bid_id.to_numpy(np.int64), "mw": mw}))
    return pd.concat(parts, ignore_index=True)
