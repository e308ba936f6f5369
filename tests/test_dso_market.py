"""The DSOs' own needs inside the coordination models: the hybrid model with the DSO buying on
the central market, and the DSO-managed schemes (i) local market first and (ii) TSO target."""

from __future__ import annotations

import numpy as np
import pytest

NOON = 46


def _run(make_model, quickstart, model, **market):
    """Tight voltage limits, so that the forecast itself violates them at noon."""
    dsos = [
        d.model_copy(update={"limits": d.limits.model_copy(update={"vm_max_pu": 1.05})})
        for d in quickstart.dsos
    ]
    dso_market = quickstart.dso_market.model_copy(update=market)
    sim = make_model(model, dsos=dsos, dso_market=dso_market)
    sim.period = NOON
    sim.run(periods=2)
    return sim.tables()


def _total(tables, name):
    return tables["kpis"].query("name == @name").value.sum()


@pytest.fixture(scope="module")
def without(make_model, quickstart):
    return _run(make_model, quickstart, "hybrid", enabled=False)


@pytest.mark.parametrize("rule", ["tso_first", "dso_first", "criticality", "economic"])
def test_hybrid_dso_buys_away_its_violations(make_model, quickstart, without, rule):
    t = _run(make_model, quickstart, "hybrid", enabled=True, priority=rule)
    assert _total(without, "voltage_violations") > 0  # the case needs the DSO's market
    assert _total(t, "voltage_violations") < _total(without, "voltage_violations")
    bought = t["dispatch"].query("buyer != 'tso'")
    assert len(bought) and (bought.resource == "der").all()
    assert set(bought.buyer) <= {d.name for d in quickstart.dsos}
    # a DSO pays as bid for what it buys, and every period still settles to zero
    assert np.allclose(bought.payment_eur, bought.bid_price_eur_per_mwh * bought.mw * 0.25)
    assert np.allclose(t["settlement"].groupby("period").amount_eur.sum(), 0.0, atol=1e-6)
    assert "dso" in set(t["settlement"].role)
    prio = t["priority"]
    assert (prio.rule == rule).all() and len(prio)
    assert (prio.dso_mw <= prio.dso_requested_mw + 1e-9).all() or rule == "economic"
    if rule == "dso_first":
        assert np.allclose(prio.dso_mw, prio.dso_requested_mw)
        assert _total(t, "priority_dso_shortfall_mw") == pytest.approx(0.0, abs=1e-9)
        # taking DER first can only leave the TSO fewer options: never a cheaper balancing
        assert _total(t, "priority_tso_extra_cost_eur") >= -1e-6
    if rule == "tso_first":
        assert _total(t, "priority_tso_extra_cost_eur") == 0.0
        shortfall = (prio.dso_requested_mw - prio.dso_mw).clip(lower=0).sum()
        assert _total(t, "priority_dso_shortfall_mw") == pytest.approx(shortfall)
    # nobody gets more of a DER than it validated
    validated = t["validation"].set_index(["period", "bid_id"]).validated_mw
    used = prio.set_index(["period", "bid_id"])
    assert (used.dso_mw + used.tso_mw <= validated.reindex(used.index) + 1e-6).all()


def test_local_market_first_offers_the_rest_to_the_tso(make_model, quickstart):
    t = _run(make_model, quickstart, "dso_managed", enabled=True, scheme="local_first")
    prio = t["priority"]
    assert len(prio) and (prio.rule == "local_first").all()
    local = t["dispatch"].query("buyer != 'tso'")
    assert local.mw.sum() > 0
    # what the DSO took is not offered again: no DER serves both beyond what was validated
    validated = t["validation"].set_index(["period", "bid_id"]).validated_mw
    both = t["dispatch"].query("resource == 'der'").groupby(["period", "id"]).mw.sum()
    both.index.names = ["period", "bid_id"]
    assert (both <= validated.reindex(both.index) + 1e-6).all()
    assert _total(t, "voltage_violations") == 0


def test_tso_target_is_a_step_of_its_own(make_model, quickstart):
    t = _run(make_model, quickstart, "dso_managed", enabled=True, scheme="tso_target")
    step3 = t["messages"].query("step == '3'")
    assert len(step3) and (step3.kind == "interface_target").all()
    assert len(t["priority"]) > 0
    assert _total(t, "interface_shortfall_mw") >= 0.0


def test_a_failed_priority_lp_is_an_event_and_the_period_goes_on(
    make_model, quickstart, monkeypatch
):
    import market_sim.markets.priority as priority

    def failing(der, requests, *args):
        return priority.Use({}, ok=False, message="priority allocation LP failed: forced")

    monkeypatch.setattr(priority, "economic_use", failing)
    t = _run(make_model, quickstart, "hybrid", enabled=True, priority="economic")
    events = t["events"].query("kind == 'priority_failed'")
    assert len(events) and events.message.str.contains("forced").all()
    # the DSOs took nothing by the failed rule; the TSO cleared and the periods settled
    assert (t["priority"].dso_mw == 0.0).all() and len(t["clearing_runs"]) == 2
