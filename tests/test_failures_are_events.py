"""A failure of a period (an infeasible schedule, a failed validation, a power flow that does
not converge) is an event of that period, and the run goes on (issue 8, item 8: an infeasible
schedule used to crash settlement with a KeyError on the empty offer book)."""

from __future__ import annotations

import pytest

from market_sim.model import MarketModel
from market_sim.scenario import load_networks


@pytest.fixture(scope="module")
def flooded(quickstart):
    """So much PV that the TSO's schedule is infeasible at noon (minimum outputs)."""
    dsos = [d.model_copy(update={"pv_scale": 300.0}) for d in quickstart.dsos]
    config = quickstart.model_copy(update={"dsos": dsos})
    return config, load_networks(config)


@pytest.mark.parametrize("model", ["tso_managed", "hybrid", "dso_managed"])
def test_an_infeasible_schedule_is_an_event_and_the_run_goes_on(flooded, case39, model):
    config, networks = flooded
    sim = MarketModel(config.for_model(model), networks, case39)
    sim.period = 48
    sim.run(periods=2)
    t = sim.tables()
    events = t["events"]
    assert (events.kind == "schedule_failed").sum() == 2
    assert set(events.period) == {48, 49}
    assert len(t["grid"]) == 2 * len(sim.dsos)  # delivery still ran and was recorded
    assert t["kpis"].period.nunique() == 2
    assert t["dispatch"].query("resource == 'ter'").empty  # no schedule, no TER offers
    assert t["prices"].query("market == 'schedule'").empty


STAGES = ("baseline", "delivery")


@pytest.mark.parametrize("model", ["hybrid", "dso_managed"])
def test_a_fallback_to_pandapower_in_validation_and_delivery_is_an_event(
    make_model, monkeypatch, model
):
    """When lightsim2grid cannot solve a network, pandapower's runpp does: slower and
    without sensitivities, so the run says so, for the DSO's validation and for delivery
    (issue 8, item 9)."""
    from market_sim.grid import lightsim_model

    monkeypatch.setattr(lightsim_model, "model_for", lambda dn, taps: None)
    monkeypatch.setattr(lightsim_model, "runpp_reason", lambda dn: "scripted")
    sim = make_model(model)
    sim.period = 48
    sim.step()
    t = sim.tables()
    fallbacks = t["events"].query("kind == 'power_flow_fallback'")
    # each network's validation, baseline (no DER activated) and delivery power flows
    expected = [f"{n}: {s}: pandapower runpp: scripted" for n in sim.dsos for s in STAGES]
    expected += [f"{n}: validation on pandapower runpp: scripted" for n in sim.dsos]
    assert sorted(fallbacks.message) == sorted(expected)
    assert t["grid"].converged.all()


def test_no_fallback_no_fallback_event(make_model):
    sim = make_model("hybrid")
    sim.period = 48
    sim.step()
    assert not sim.tables()["events"].kind.eq("power_flow_fallback").any()


@pytest.mark.parametrize("model", ["tso_managed", "hybrid", "dso_managed"])
def test_a_period_without_any_offer_runs(flooded, case39, model):
    """No flexible prosumer and no schedule: every bid and offer table of the period is empty,
    and every stage takes it (issue 8, item 8: an empty offer table is a valid input)."""
    config, networks = flooded
    prosumers = config.prosumers.model_copy(update={"flexible_share": 0.0})
    sim = MarketModel(
        config.model_copy(update={"prosumers": prosumers}).for_model(model), networks, case39
    )
    sim.period = 48
    sim.run(periods=1)
    t = sim.tables()
    assert t["bids"].empty and t["dispatch"].empty
    kinds = set(t["events"].kind)  # 300 times the PV: some power flows do not converge
    assert "schedule_failed" in kinds and "clearing_failed" not in kinds
    assert len(t["grid"]) == len(sim.dsos)
    kpis = t["kpis"]
    offered = kpis[kpis.name.str.startswith("der_offered_") | kpis.name.str.startswith("ter_")]
    assert len(offered) and offered.value.eq(0.0).all()
