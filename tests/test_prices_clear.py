"""Prices that clear and no wash trades (issue 8, items 5 and 6).

Hand-worked cases of the DLMP (an accepted DER is paid at least its ask where distribution
constraints bind) and of a device's mutually exclusive up and down bids, in the balancing
market and in the DSOs' least-cost purchase; then the invariants over whole periods of each
coordination model and pricing rule, with the asks of the quickstart and with cheap ones.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from market_sim.config import PriceConfig, ProsumerPrices, SettlementConfig
from market_sim.invariants import individual_rationality
from market_sim.markets.balancing import BalancingMarket
from market_sim.markets.central import dlmp
from market_sim.markets.devices import partner_used, washed_devices
from market_sim.markets.local_market import LocalMarketResult
from market_sim.markets.priority import Needs, least_cost_use, left_after, share
from market_sim.markets.settlement import DISPATCH_DTYPES, dispatch_columns
from market_sim.markets.transmission import network_from_arrays
from market_sim.types import UP, typed_frame

VOLL = 3000.0
HOURS = 0.25


def _triangle():
    return network_from_arrays(
        n_buses=3, branches=[(0, 1, 0.1, 1000.0), (1, 2, 0.1, 1000.0), (0, 2, 0.1, 1000.0)]
    )


def _offers(rows, device=None) -> pd.DataFrame:
    """Offer book from (offer_id, bus, direction, mw, price) tuples."""
    offers = pd.DataFrame(rows, columns=["offer_id", "bus", "direction", "mw", "price_eur_per_mwh"])
    return offers if device is None else offers.assign(device=device)


def _as_bids(offers: pd.DataFrame) -> pd.DataFrame:
    return offers.rename(columns={"offer_id": "bid_id"})


# ---- the DLMP ---------------------------------------------------------------------------------


def _behind_a_feeder():
    """Need 80 MW at bus 1. DER bid 2 (up 50 MW at 10) and bid 4 (up 50 MW at 31) sit in one
    DSO network behind the interface bus 0; a distribution constraint ``q2 - 0.5 q4 <= 20``
    limits bid 2 unless bid 4 relieves it. A generator offers 100 MW at 30 at bus 2.

    By hand: taking 1 MW of bid 4 lets bid 2 take 0.5 MW more and saves 1.5 MW of the
    generator: 31 + 0.5 x 10 - 1.5 x 30 < 0, so the DER cover the need alone, q2 = q4 = 40.
    The marginal MW of need then costs 2/3 x 31 + 1/3 x 10 = 24 at the interface (less than
    the generator's 30): below bid 4's ask of 31. The constraint's dual is 10 - 24 = -14, and
    the DLMPs are 24 + (-14) = 10 for bid 2 (its ask: it is inside its bounds) and
    24 + (-0.5)(-14) = 31 for bid 4 (its ask too).
    """
    offers = _offers(
        [(2, 0, "up", 50.0, 10.0), (4, 0, "up", 50.0, 31.0), (-1, 2, "up", 100.0, 30.0)]
    )
    a = sparse.csr_array(np.array([[1.0, -0.5]]))
    rows = (sparse.hstack([a, sparse.csr_array((1, 1))]).tocsr(), np.array([20.0]))
    result = BalancingMarket(_triangle(), VOLL).clear(
        offers, np.array([0.0, 80.0, 0.0]), None, rows
    )
    return result, _as_bids(offers.iloc[:2]), a


def test_interface_price_alone_pays_a_der_below_its_ask():
    result, _, _ = _behind_a_feeder()
    assert result.ok, result.message
    mw = result.accepted.set_index("offer_id").mw
    assert mw[2] == pytest.approx(40.0) and mw[4] == pytest.approx(40.0)
    np.testing.assert_allclose(result.price_eur_per_mwh, 24.0, atol=1e-5)
    np.testing.assert_allclose(result.row_duals, [-14.0], atol=1e-5)


def test_dlmp_pays_each_accepted_der_its_ask_at_the_margin():
    result, bids, a = _behind_a_feeder()
    price = dlmp(result, bids, a, np.array([20.0]))
    np.testing.assert_allclose(price.loc[[2, 4]], [10.0, 31.0], atol=1e-5)


def test_dlmp_of_down_bids_is_a_price_of_injection():
    """The same feeder with the TSO short of *less* injection: down bids 3 (at 10) and 5 (at
    31) and a generator's down offer at 30. The DLMPs are prices per MWh of injection, which a
    down activation pays back: per MWh of service they pay each its ask, where the interface
    price (-24) pays bid 5 only 24."""
    offers = _offers(
        [(3, 0, "down", 50.0, 10.0), (5, 0, "down", 50.0, 31.0), (-2, 2, "down", 100.0, 30.0)]
    )
    a = sparse.csr_array(np.array([[1.0, -0.5]]))
    rows = (sparse.hstack([a, sparse.csr_array((1, 1))]).tocsr(), np.array([20.0]))
    need = np.array([0.0, -80.0, 0.0])
    result = BalancingMarket(_triangle(), VOLL).clear(offers, need, None, rows)
    assert result.ok, result.message
    np.testing.assert_allclose(result.accepted.set_index("offer_id").mw[[3, 5]], 40.0)
    np.testing.assert_allclose(result.price_eur_per_mwh, -24.0, atol=1e-5)
    price = dlmp(result, _as_bids(offers.iloc[:2]), a, np.array([20.0]))
    np.testing.assert_allclose(-price.loc[[3, 5]], [10.0, 31.0], atol=1e-5)


def _settle(der_price, pricing="pay_as_clear"):
    bids = pd.DataFrame(
        {
            "bid_id": [2, 5],
            "prosumer": [1, 2],
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
    delivery = pd.DataFrame(
        {"bid_id": [2, 5], "buyer": "tso", "mw": [2.0, 1.0], "delivered_mw": [2.0, 1.0]}
    )
    accepted = pd.DataFrame({"offer_id": pd.Series(dtype="int64"), "mw": pd.Series(dtype=float)})
    terms = SettlementConfig(pricing=pricing, aggregator_fee_eur_per_mwh=0.0)
    columns = dispatch_columns(
        accepted, pd.DataFrame(), delivery, bids, {"d": 5}, pd.Series({5: 9.0}), HOURS, terms,
        der_price,
    )  # fmt: skip
    table = typed_frame(columns, DISPATCH_DTYPES)
    return table.assign(period=0)


def test_settlement_pays_a_der_its_own_location_price():
    table = _settle(pd.Series({2: 10.5, 5: -4.0}))
    np.testing.assert_allclose(table.price_eur_per_mwh, [10.5, -4.0])
    # up is paid 10.5 per MWh; down pays back -4, i.e. is paid 4 per MWh
    np.testing.assert_allclose(table.payment_eur, [10.5 * 2 * HOURS, 4.0 * HOURS])
    assert individual_rationality(table, HOURS) == []


def test_below_ask_sees_the_interface_price_short_of_the_asks():
    at_interface = _settle(None)  # 9 at the interface: up paid 9 < 10, down paid -9 < 4
    assert len(individual_rationality(at_interface, HOURS)) == 2
    assert individual_rationality(_settle(None, "pay_as_bid"), HOURS) == []


# ---- no wash trades -------------------------------------------------------------------------


def _crossed(with_devices: bool):
    """Need 1 MW up at bus 1. A device offers up (bid 2, 2 MW) and down (bid 3, 1 MW), both
    at -5 (it would pay to move either way); a generator offers 10 MW at 30. Taking 2 MW up
    and 1 MW down earns 15 and covers the need; with the bids exclusive the device moves up
    1 MW only (earning 5)."""
    offers = _offers(
        [(2, 0, "up", 2.0, -5.0), (3, 0, "down", 1.0, -5.0), (-1, 2, "up", 10.0, 30.0)],
        [1, 1, -1] if with_devices else None,
    )
    return BalancingMarket(_triangle(), VOLL).clear(offers, np.array([0.0, 1.0, 0.0]))


def test_without_devices_the_lp_wash_trades():
    result = _crossed(with_devices=False)
    mw = result.accepted.set_index("offer_id").mw
    np.testing.assert_allclose(mw[[2, 3]], [2.0, 1.0])
    assert result.cost_eur == pytest.approx(-15.0, abs=1e-6)


def test_a_device_is_dispatched_one_way_only():
    result = _crossed(with_devices=True)
    assert result.ok, result.message
    mw = result.accepted.set_index("offer_id").mw
    assert list(mw.index) == [2] and mw[2] == pytest.approx(1.0)
    assert result.cost_eur == pytest.approx(-5.0, abs=1e-6)
    # the prices are the last LP's: the device is marginal, inside its bounds, at its ask
    np.testing.assert_allclose(result.price_eur_per_mwh, -5.0, atol=1e-5)


def test_washed_devices_are_those_used_both_ways():
    device = np.array([1, 1, 2, 2, -1, -1, 3])
    is_up = np.array([True, False, True, False, True, False, True])
    mw = np.array([2.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    expected = [True, True, False, False, False, False, False]
    np.testing.assert_array_equal(washed_devices(device, is_up, mw), expected)


def test_local_market_takes_one_direction_of_a_device():
    """A DSO needs relief on two constraints; bid 2 (up) relieves one, bid 3 (down, the same
    device) the other, both for money (negative asks). Only one of them is bought."""
    der = pd.DataFrame(
        {"bid_id": [2, 3, 4], "direction": ["up", "down", "down"], "mw": 1.0,
         "price_eur_per_mwh": [-5.0, -5.0, 20.0]}
    )  # fmt: skip
    needs = Needs("dso", np.array([1.0, 1.0]), np.array([[1.0, 0, 0], [0, 1.0, 1.0]]), 1000.0)
    use = least_cost_use(der, [needs])
    assert use.ok
    mw = use["dso"]
    np.testing.assert_allclose(mw, [1.0, 0.0, 1.0], atol=1e-9)  # -5 + 20: the least cost


def test_a_second_buyer_gets_nothing_of_a_device_used_the_other_way():
    bids = pd.DataFrame(
        {"bid_id": [2, 3, 4, 5], "direction": ["up", "down"] * 2, "mw": [1.0, 2.0, 1.0, 1.0]}
    )
    used = pd.DataFrame({"bid_id": [2, 4], "mw": [0.5, 1.0]})
    is_up = (bids.direction == "up").to_numpy()
    np.testing.assert_array_equal(partner_used(bids.bid_id, is_up, [0.5, 0, 1.0, 0]), [0, 1, 0, 1])
    np.testing.assert_allclose(left_after(bids, used).mw, [0.5, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("rule", ["tso_first", "dso_first"])
def test_the_tso_and_a_dso_never_buy_one_device_both_ways(rule):
    """Bid 2 (up) and bid 3 (down) are one device. The TSO's clearing wants bid 2; the DSO's
    local market bought bid 3. Whoever the rule serves first gets the device; the other
    gets nothing of it."""
    usable = pd.DataFrame(
        {"bid_id": [2, 3], "dso": "d", "direction": ["up", "down"], "mw": 1.0,
         "price_eur_per_mwh": [10.0, 4.0]}
    )  # fmt: skip

    def clear(bids):  # the TSO takes whatever is left of bid 2
        mw = bids.set_index("bid_id").mw.get(2, 0.0)
        dispatch = pd.DataFrame({"bid_id": [2], "mw": [mw], "buyer": "tso"})
        return SimpleNamespace(ok=True, cost_eur=10.0 * mw), dispatch[dispatch.mw > 0]

    bought = pd.DataFrame({"bid_id": [3], "mw": [1.0]})
    needs = Needs("d", np.array([1.0]), np.array([[0.0, 1.0]]), 500.0)
    request = {"d": LocalMarketResult(bought, needs, np.array([2, 3]), ("v",), (), 4.0, 1)}
    ter = pd.DataFrame({"direction": ["up"], "mw": [10.0], "price_eur_per_mwh": [50.0]})
    sharing = share(rule, usable, request, clear, ter, 1.0, VOLL)
    expected = {"tso_first": [(2, "tso")], "dso_first": [(3, "d")]}[rule]
    assert list(zip(sharing.dispatch.bid_id, sharing.dispatch.buyer, strict=True)) == expected


# ---- whole periods ----------------------------------------------------------------------------

CHEAP = ProsumerPrices(**{k: PriceConfig(mean=0.0, sd=5.0) for k in ProsumerPrices.model_fields})


@pytest.mark.parametrize("pricing", ["pay_as_clear", "pay_as_bid"])
@pytest.mark.parametrize("model", ["tso_managed", "hybrid", "dso_managed"])
def test_cheap_asks_no_wash_trades_and_no_payment_below_ask(make_model, quickstart, model, pricing):
    """Asks around zero with a large spread: many devices would pay to move either way, and
    before issue 8 the clearing took both of their bids (some 40 devices a period)."""
    prosumers = quickstart.prosumers.model_copy(update={"prices": CHEAP})
    settlement = quickstart.settlement.model_copy(update={"pricing": pricing})
    sim = make_model(model, prosumers=prosumers, settlement=settlement)
    sim.period = 44
    sim.step()
    dispatch = sim.recorder.table("dispatch")
    assert (dispatch.resource == "der").sum() > 20  # cheap DER are used
    assert _violated(sim) == []  # no wash trade, nobody paid below the ask (every invariant)


def _violated(sim) -> list[str]:
    """The invariants violated in the periods run (``invariant_violated`` events)."""
    events = sim.recorder.table("events")
    return events[events.kind == "invariant_violated"].message.tolist()


def test_quickstart_tso_managed_pays_no_der_below_its_ask(make_model):
    """The day of issue 8: under tso_managed accepted DER were paid the interface price,
    below their asks (e.g. 9.414 paid, 9.43 asked, periods 48 to 51 of the old quickstart).
    On the redesigned quickstart the distribution rows bind in the late morning (periods 28
    to 42): there the DLMP differs from the interface price, and no DER is paid below its ask.
    """
    sim = make_model("tso_managed")
    sim.run(44)
    dispatch = sim.recorder.table("dispatch")
    der = dispatch[(dispatch.resource == "der") & dispatch.period.between(28, 43)]
    assert len(der) > 20
    assert _violated(sim) == []
    # the DLMP differs from the interface price somewhere: distribution constraints bind
    interface = sim.recorder.table("prices").query("market == 'balancing'")
    at_bus = interface.set_index(["period", "bus"]).price_eur_per_mwh
    gap = der.price_eur_per_mwh.to_numpy() - at_bus.reindex(pd.MultiIndex.from_frame(
        der[["period", "bus"]])).to_numpy()  # fmt: skip
    assert np.abs(gap).max() > 1e-3
    assert UP in set(der.direction)
