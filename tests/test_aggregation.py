"""Aggregated offers and their disaggregation, with hand-worked answers."""

from __future__ import annotations

import pandas as pd

from market_sim.markets.aggregation import aggregate_offer, disaggregate
from market_sim.markets.offers import OFFER_COLUMNS


def _validated():
    return pd.DataFrame(
        {
            "bid_id": [0, 2, 4, 1, 3],
            "dso": "d",
            "direction": ["up", "up", "up", "down", "down"],
            "mw": [1.0, 2.0, 0.5, 3.0, 1.0],
            "price_eur_per_mwh": [30.0, 10.0, 10.0, 5.0, 1.0],
        }
    )


def test_aggregate_offer_is_a_merit_order_curve():
    curve = aggregate_offer(_validated(), interface_bus=7, first_id=100)
    up = curve[curve.direction == "up"]
    assert up.price_eur_per_mwh.tolist() == [10.0, 30.0]
    assert up.mw.tolist() == [2.5, 1.0]  # two bids at 10 EUR/MWh form one step
    assert (curve.bus == 7).all() and curve.offer_id.min() == 100
    assert curve.offer_id.is_unique
    assert tuple(curve.columns) == OFFER_COLUMNS
    empty = aggregate_offer(_validated().assign(mw=0.0), interface_bus=7, first_id=100)
    assert tuple(empty.columns) == OFFER_COLUMNS and empty.empty


def test_disaggregate_takes_cheapest_bids_first():
    d = disaggregate(_validated(), {"up": 2.2, "down": 1.5}).set_index("bid_id").mw
    assert d[2] + d[4] == 2.2 and d[0] == 0.0  # the 10 EUR/MWh bids, lower id first
    assert d[2] == 2.0 and abs(d[4] - 0.2) < 1e-12
    # down: not the 1 EUR/MWh bid 3, whose device (bid 2's) moves up; bid 1 instead
    assert d[3] == 0.0 and d[1] == 1.5
