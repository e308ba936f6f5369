"""KPIs computed by hand on a small case: resource cost (efficiency) against payments."""

from __future__ import annotations

import pandas as pd
import pytest

from market_sim.kpis import period_kpis
from market_sim.markets.settlement import dispatch_table
from market_sim.types import PowerFlowResult

HOURS = 0.25
VOLL = 3000.0


class Terms:
    pricing = "pay_as_clear"
    aggregator_fee_eur_per_mwh = 1.0
    imbalance_price_factor = 1.5


def _small_case(delivered_mw: float) -> pd.DataFrame:
    """One TER up offer (10 MW at 40 EUR/MWh) and one DER up bid (2 MW asking 30 EUR/MWh) at
    bus 5, both accepted; the balancing price there is 50 EUR/MWh. The DER delivers
    ``delivered_mw`` of its 2 MW."""
    accepted = pd.DataFrame({"offer_id": [-1, 7], "mw": [10.0, 2.0]})
    offers = pd.DataFrame(
        {
            "offer_id": [-1],
            "element": ["gen 0"],
            "bus": [5],
            "direction": ["up"],
            "mw": [10.0],
            "price_eur_per_mwh": [40.0],
        }
    )
    delivery = pd.DataFrame(
        {"bid_id": [7], "buyer": ["tso"], "mw": [2.0], "delivered_mw": [delivered_mw]}
    )
    bids = pd.DataFrame(
        {
            "bid_id": [7],
            "prosumer": [3],
            "aggregator": ["agg"],
            "dso": ["d1"],
            "element": ["storage"],
            "element_index": [0],
            "bus": [11],
            "direction": ["up"],
            "mw": [2.0],
            "price_eur_per_mwh": [30.0],
        }
    )
    prices = pd.Series([50.0], index=[5])
    return dispatch_table(accepted, offers, delivery, bids, {"d1": 5}, prices, HOURS, Terms), bids


def test_today_a_der_that_fails_to_deliver_lowers_system_cost():
    """Issue 8, item 2 reproduced: system_cost_eur subtracts the imbalance charge of a DER that
    did not deliver, so failing to deliver makes the system look cheaper."""
    costs = {}
    for delivered in (2.0, 0.0):
        dispatch, bids = _small_case(delivered)
        flow = PowerFlowResult(True, 1.0, 1.0, 50.0, 50.0, 0, 0, 0, 0.0, 0.0)
        kpis = period_kpis(
            hours=HOURS, need_mw=12.0, schedule_cost_eur_per_h=1000.0, bids=bids,
            validation=pd.DataFrame({"bid_id": [7], "validated_mw": [2.0]}), dispatch=dispatch,
            unserved_mw=0.0, voll_eur_per_mwh=VOLL, grid={"d1": flow},
            messages=pd.DataFrame(
                {"sender": [], "receiver": [], "bytes": [], "late": []}
            ),
        )  # fmt: skip
        costs[delivered] = dict((n, v) for n, v, _ in kpis)["system_cost_eur"]
    # 250 schedule + 12 MW x 50 x 0.25 paid - 2 MW x 50 x 1.5 x 0.25 imbalance charged
    assert costs[2.0] == pytest.approx(250.0 + 150.0)
    assert costs[0.0] == pytest.approx(250.0 + 150.0 - 37.5)
    assert costs[0.0] < costs[2.0]
