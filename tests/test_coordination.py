"""Each coordination model's message log shows the paper's steps, in order, between the right
agents; validated bids are safe; a run is deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_sim.grid.constraints import effective_limits, within
from market_sim.grid.injections import apply_bids
from market_sim.grid.powerflow import run_power_flow, run_power_flow_detailed
from market_sim.registry import COORDINATION_MODELS

EXPECTED = {
    "tso_managed": ["1a", "1b", "2a", "2b"],
    "hybrid": ["1", "2", "3a", "3b", "4"],
    "dso_managed": ["1", "2a", "2b", "3", "4"],
}
NOON = 48  # period 48 of the day starts at 12:00


def _one_period(make_model, model, period=NOON):
    sim = make_model(model)
    sim.period = period
    sim.step()
    return sim


@pytest.mark.parametrize("model", list(EXPECTED))
def test_message_log_follows_the_paper(make_model, model):
    sim = _one_period(make_model, model)
    log = sim.message_table()
    assert list(dict.fromkeys(log.step)) == EXPECTED[model]
    # every message is sent by and to the roles its step declares, with one of its kinds
    steps = COORDINATION_MODELS.load(model).steps
    for row in log.itertuples():
        declared = {(s.sender, s.receiver, s.kind.value) for s in steps if s.label == row.step}
        assert (row.sender_role, row.receiver_role, row.kind) in declared, row
    assert log.time_s.is_monotonic_increasing
    assert not log.late.any()
    # each step's messages are sent after the previous step's arrived
    first_sent = log.groupby("step", sort=False).time_s.min()
    last_arrival = log.groupby("step", sort=False).arrival_s.max()
    for before, after in zip(EXPECTED[model], EXPECTED[model][1:], strict=False):
        if before in ("1a",):  # 1a and 1b are sent together at gate opening
            continue
        assert first_sent[after] >= last_arrival[before] - 1e-9, (before, after)


def test_only_tso_managed_ships_operational_data(make_model):
    kinds = {m: set(_one_period(make_model, m).message_table().kind) for m in EXPECTED}
    assert "operational_data" in kinds["tso_managed"]
    assert all("operational_data" not in kinds[m] for m in ("hybrid", "dso_managed"))
    assert "aggregated_offer" in kinds["dso_managed"]


def _delivered_taps(sim, period: int, name: str) -> np.ndarray:
    """The taps the DSO operated at in ``period`` (its validated ones, with OLTC control)."""
    rows = sim.recorder.table("injections").query("period == @period and dso == @name")
    return rows[rows.element == "trafo"].sort_values("element_index").tap_pos.to_numpy(float)


@pytest.mark.parametrize("model", ["hybrid", "dso_managed"])
def test_validated_bids_all_activated_pass_ac_power_flow(make_model, model):
    """Physics: what a DSO validates, dispatched in full at the taps it validated with, keeps
    its network within its limits, or no worse than the forecast where that already violates
    them (the rural feeder's noon overvoltage in the quickstart)."""
    sim = make_model(model)
    for period in (44, 52, 72):
        sim.period = period
        energy = sim.state.energy  # the baselines include the period's energy repayments
        sim.step()
        bids = sim.recorder.table("bids").query("period == @period")
        validation = sim.recorder.table("validation").query("period == @period")
        assert (
            validation.validated_mw
            <= bids.set_index("bid_id").mw.reindex(validation.bid_id).to_numpy() + 1e-9
        ).all()
        for name, dso in sim.dsos.items():
            mine = bids[bids.dso == name].merge(validation[["bid_id", "validated_mw"]])
            point = sim.population.with_recovery(sim.forecasts(period), energy)[name].copy()
            point.trafo_tap_pos = _delivered_taps(sim, period, name)
            base = run_power_flow_detailed(dso.network, point, dso.limits)
            caps = effective_limits(dso.network, base, dso.limits)
            for direction in ("up", "down"):
                chosen = mine[mine.direction == direction]
                injections = apply_bids(dso.network, point, chosen, "validated_mw")
                result = run_power_flow_detailed(dso.network, injections, dso.limits)
                assert within(dso.network, result, caps), (name, period, direction, result.result)


def test_unchecked_bids_would_violate_limits(make_model):
    """The quickstart is sized so that validation matters: unchecked activation violates."""
    sim = make_model("hybrid")
    violated = 0
    for period in (40, 48, 56, 76):
        sim.period = period
        sim.step()
        bids = sim.recorder.table("bids").query("period == @period")
        for name, dso in sim.dsos.items():
            for direction in ("up", "down"):
                chosen = bids[(bids.dso == name) & (bids.direction == direction)]
                injections = apply_bids(dso.network, sim.forecasts(period)[name], chosen)
                violated += not run_power_flow(dso.network, injections, dso.limits).within_limits
    assert violated > 0


def test_same_seed_same_tables(make_model):
    def run():
        sim = make_model("dso_managed")
        sim.period = NOON
        sim.run(periods=3)
        return sim.tables()

    first, second = run(), run()
    for name in first:
        if name == "timings":
            continue
        pd.testing.assert_frame_equal(first[name], second[name], check_exact=True, obj=name)
    assert len(first["bids"]) > 0 and len(first["grid"]) == 3 * 2


def test_dispatched_der_within_validated(make_model):
    sim = make_model("hybrid")
    sim.period = NOON
    sim.run(periods=4)
    t = sim.tables()
    der = (
        t["dispatch"]
        .query("resource == 'der'")
        .merge(t["validation"], left_on=["period", "id"], right_on=["period", "bid_id"])
    )
    assert (der.mw <= der.validated_mw + 1e-6).all()
    assert np.isfinite(t["kpis"].value).all()


@pytest.mark.parametrize("model", list(EXPECTED))
def test_late_messages_are_rejected_logged_and_the_run_goes_on(make_model, quickstart, model):
    """A link slower than the bid gate: every bid arrives late, nothing is dispatched."""
    slow = quickstart.communication.model_copy(update={"latency_s": 400.0})
    sim = make_model(model, communication=slow)
    sim.period = NOON
    sim.run(periods=2)
    t = sim.tables()
    first = t["messages"][t["messages"].step == EXPECTED[model][0]]
    assert first.late.all() and len(first) > 0
    assert (t["events"].kind == "late_message").sum() >= len(first)
    assert t["dispatch"].query("resource == 'der'").empty
    assert t["grid"].converged.all() and len(t["grid"]) == 2 * len(sim.dsos)
    assert sim.population.devices is not None


def test_models_of_a_scenario_face_the_same_forecast_errors(make_model, quickstart):
    """Each random process has its own stream: dispatch differences never shift the forecast
    error. (The need is that error times the forecast load, which includes the energy each
    model's DER repay, so it differs between models by the error's share of that energy.)"""
    settlement = quickstart.settlement.model_copy(update={"delivery_reliability": 0.5})
    needs, errors = {}, {}
    for model in EXPECTED:
        sim = make_model(model, settlement=settlement)
        sim.period = NOON
        errors[model] = []
        for _ in range(4):
            sim.step()
            errors[model].append(sim.state.forecast_error)
        needs[model] = sim.tables()["kpis"].query("name == 'need_mw'").value.to_numpy()
    assert errors["tso_managed"] == errors["hybrid"] == errors["dso_managed"]
    assert len(set(errors["hybrid"])) == 4
    np.testing.assert_allclose(needs["tso_managed"], needs["hybrid"], rtol=1e-3)
    np.testing.assert_allclose(needs["hybrid"], needs["dso_managed"], rtol=1e-3)


def test_tso_managed_is_one_integrated_problem_whose_dispatch_is_safe(make_model):
    """2a carries the DSO networks' constraints: a bigger problem than the hybrid TSO's, and
    its DER dispatch, applied to the state the DSOs reported, passes an AC power flow."""
    from market_sim.grid.injections import injections_table
    from market_sim.grid.state import injections_from_table

    sizes = {}
    for model in ("tso_managed", "hybrid"):
        sim = make_model(model)
        sim.period = NOON
        reported = {}
        for _ in range(3):
            # what the DSOs report at gate opening: the period's forecast operating point
            # (the profiles plus the period's energy repayments)
            period = sim.period
            forecast = sim.population.with_recovery(sim.forecasts(period), sim.state.energy)
            sim.step()
            reported[period] = {
                n: injections_table(d.network, forecast[n]) for n, d in sim.dsos.items()
            }
        t = sim.tables()
        sizes[model] = t["clearing_runs"].set_index("period")
        if model != "tso_managed":
            continue
        assert (sizes[model].distribution_constraints > 0).all()
        der = (
            t["dispatch"]
            .query("resource == 'der'")
            .merge(
                t["bids"],
                left_on=["period", "id"],
                right_on=["period", "bid_id"],
                suffixes=("", "_bid"),
            )
        )
        assert len(der) > 0
        for (period, name), rows in der.groupby(["period", "dso"]):
            dso = sim.dsos[name]
            state = injections_from_table(dso.network, reported[period][name])
            base = run_power_flow(dso.network, state, dso.limits)
            result = run_power_flow(dso.network, apply_bids(dso.network, state, rows), dso.limits)
            # within the limits, or no worse than the reported state where it already was not
            lim = dso.limits
            assert result.converged, (period, name)
            assert result.vm_max_pu <= max(lim.vm_max_pu, base.vm_max_pu) + 1e-6, (period, name)
            assert result.vm_min_pu >= min(lim.vm_min_pu, base.vm_min_pu) - 1e-6, (period, name)
            for loading in ("max_line_loading_percent", "max_trafo_loading_percent"):
                cap = max(lim.max_loading_percent, getattr(base, loading))
                assert getattr(result, loading) <= cap + 1e-6, (period, name, loading)
    extra = sizes["tso_managed"].n_constraints - sizes["hybrid"].n_constraints
    assert (extra == sizes["tso_managed"].distribution_constraints).all()


def test_dso_managed_can_send_its_flexibility_area(make_model, quickstart):
    dsos = [d.model_copy(update={"flexibility_area": True}) for d in quickstart.dsos]
    sim = make_model("dso_managed", dsos=dsos)
    sim.period = NOON
    sim.step()
    t = sim.tables()
    sent = t["messages"].query("kind == 'flexibility_area'")
    assert set(sent.step) == {"2b"} and set(sent.sender) == {d.name for d in dsos}
    areas = t["flexibility_areas"]
    assert set(areas.dso) == {d.name for d in dsos}
    assert (areas.groupby("dso").vertex.count() >= 3).all()
    assert areas.verified.all()
    # the forecast interface point, with no flexibility used, lies inside each area
    for name, area in areas.groupby("dso"):
        dso = sim.dsos[name]
        base = run_power_flow(dso.network, sim.forecasts(NOON)[name], dso.limits)
        assert area.p_mw.min() - 1e-6 <= base.interface_p_mw <= area.p_mw.max() + 1e-6
        assert area.q_mvar.min() - 1e-6 <= base.interface_q_mvar <= area.q_mvar.max() + 1e-6
        assert area.p_mw.max() > area.p_mw.min() and area.q_mvar.max() > area.q_mvar.min()


def test_reserve_is_held_back_from_activation(make_model, quickstart):
    """With an upward reserve requirement the market activates at most what leaves it unused;
    what offers cannot hold back is recorded as a shortfall."""
    transmission = quickstart.transmission.model_copy(update={"reserve_up_mw": 25.0})
    sim = make_model("hybrid", transmission=transmission)
    sim.period = NOON
    cleared, clear = [], sim.tso.clear
    sim.tso.clear = lambda *args: cleared.append(clear(*args)) or cleared[-1]
    checked = 0
    for _ in range(4):
        period = sim.period
        sim.step()
        offers = cleared[-1].offers
        up = offers[offers.direction == "up"]
        t = sim.tables()
        dispatch, kpis = t["dispatch"], t["kpis"]
        accepted = dispatch[(dispatch.period == period) & (dispatch.direction == "up")]
        room = up.mw.sum()
        assert accepted.mw.sum() <= max(0.0, room - 25.0) + 1e-6
        shortfall = kpis[(kpis.period == period) & (kpis.name == "reserve_shortfall_mw")]
        assert shortfall.value.iloc[0] == pytest.approx(max(0.0, 25.0 - room))
        checked += accepted.mw.sum() > 0
    # the requirement is one row of the period's problem
    rows = sim.tables()["clearing_runs"]
    balancing = sim.tso.markets.balancing
    assert (rows.n_constraints == balancing.n_constraints + 1).all() and checked > 0
