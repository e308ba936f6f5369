"""Settlement: pricing rules with hand-worked answers, and budget balance over a run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_sim.config import SettlementConfig
from market_sim.markets.offers import bid_offers
from market_sim.markets.settlement import DISPATCH_DTYPES, dispatch_columns, settlement_table
from market_sim.types import typed_frame


def _bids():
    return pd.DataFrame(
        {
            "bid_id": [2, 3],
            "prosumer": [7, 8],
            "aggregator": "agg",
            "dso": "d",
            "element": "load",
            "element_index": [0, 1],
            "bus": [1, 2],
            "direction": ["up", "down"],
            "mw": [2.0, 1.0],
            "price_eur_per_mwh": [10.0, 4.0],
        }
    )


def _settle(pricing, delivered=(2.0, 1.0), fee=1.0):
    bids = _bids()
    delivery = pd.DataFrame(
        {"bid_id": [2, 3], "buyer": "tso", "mw": [2.0, 1.0], "delivered_mw": delivered}
    )
    accepted = pd.DataFrame({"offer_id": pd.Series(dtype="int64"), "mw": pd.Series(dtype=float)})
    config = SettlementConfig(pricing=pricing, aggregator_fee_eur_per_mwh=fee)
    offers = bid_offers(bids, {"d": 5}).assign(element="")
    columns = dispatch_columns(
        accepted, offers, delivery, bids, {"d": 5}, pd.Series({5: 12.0}), 0.25, config
    )
    table = typed_frame(columns, DISPATCH_DTYPES)
    return table.set_index("id"), settlement_table(table, 0.25, config)


def test_pay_as_clear_pays_the_bus_price_per_mwh_of_injection_change():
    table, _ = _settle("pay_as_clear")
    assert table.payment_eur[2] == 12.0 * 2.0 * 0.25  # up: paid the price
    assert table.payment_eur[3] == -12.0 * 1.0 * 0.25  # down: pays the price back


def test_pay_as_bid_pays_each_offer_its_own_price():
    table, _ = _settle("pay_as_bid")
    assert table.payment_eur[2] == 10.0 * 2.0 * 0.25
    assert table.payment_eur[3] == 4.0 * 1.0 * 0.25


def test_undelivered_energy_is_charged_and_everything_balances():
    table, legs = _settle("pay_as_clear", delivered=(0.5, 1.0), fee=2.0)
    assert table.imbalance_eur[2] == pytest.approx(1.5 * 12.0 * 1.5 * 0.25)  # factor 1.5
    assert table.imbalance_eur[3] == 0.0
    net = legs.groupby("party").amount_eur.sum()
    assert net.sum() == pytest.approx(0.0, abs=1e-9)
    fee = 2.0 * (2.0 + 1.0) * 0.25
    assert net["agg"] == pytest.approx(fee)  # the aggregator keeps exactly its fee
    assert net["tso"] == pytest.approx(-table.payment_eur.sum() + table.imbalance_eur.sum())
    assert net["prosumer 7"] == pytest.approx(
        table.payment_eur[2] - 2.0 * 2.0 * 0.25 - table.imbalance_eur[2]
    )


@pytest.mark.parametrize("pricing", ["pay_as_clear", "pay_as_bid"])
def test_a_run_settles_to_zero_and_rewards_every_accepted_offer(make_model, quickstart, pricing):
    settlement = quickstart.settlement.model_copy(
        update={"pricing": pricing, "delivery_reliability": 0.8, "aggregator_fee_eur_per_mwh": 1.5}
    )
    sim = make_model("hybrid", settlement=settlement)
    sim.period = 44
    sim.run(periods=6)
    t = sim.tables()
    sums = t["settlement"].groupby("period").amount_eur.sum()
    assert len(sums) == 6 and np.allclose(sums, 0.0, atol=1e-6)
    der = t["dispatch"].query("resource == 'der'")
    assert len(der) > 0
    assert (der.delivered_mw < der.mw).any()  # some DER failed to deliver at 80 %
    assert (der.imbalance_eur[der.delivered_mw < der.mw] > 0).all()
    # individual rationality: no accepted offer is paid less than it asked
    asked = t["dispatch"].bid_price_eur_per_mwh * t["dispatch"].mw * sim.period_h
    assert (t["dispatch"].payment_eur >= asked - 1e-6).all()
