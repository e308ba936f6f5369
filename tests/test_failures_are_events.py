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


def test_a_fallback_to_pandapower_in_delivery_is_an_event(make_model, monkeypatch):
    """When lightsim2grid cannot solve a network, pandapower's runpp does: slower and
    without sensitivities, so the run says so (issue 8, item 9)."""
    from market_sim.grid import lightsim_model

    monkeypatch.setattr(lightsim_model, "model_for", lambda dn, taps: None)
    monkeypatch.setattr(lightsim_model, "runpp_reason", lambda dn: "scripted")
    sim = make_model("hybrid")
    sim.period = 48
    sim.step()
    t = sim.tables()
    fallbacks = t["events"].query("kind == 'power_flow_fallback'")
    # each network's baseline power flow (no DER activated) and its delivery power flow
    expected = [f"{n}: {s}: pandapower runpp: scripted" for n in sim.dsos for s in STAGES]
    assert sorted(fallbacks.message) == sorted(expected)
    assert t["grid"].converged.all()
