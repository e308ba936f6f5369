"""Tests of the distribution-grid layer: loading, power flow, replay and bid validation."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandapower as pp
import pandas as pd
import pytest
import scipy.sparse as sp

from market_sim.grid.flow_summary import monitored_buses
from market_sim.grid.injections import apply_bids, injections_table
from market_sim.grid.jacobian import jacobian
from market_sim.grid.network import (
    DistributionNetwork,
    element_positions,
    load_network,
    profile_step,
    step_of,
)
from market_sim.grid.pandapower_reference import replay_power_flow
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow, run_power_flow_detailed
from market_sim.grid.profile_cache import PROFILE_CACHE_VERSION
from market_sim.grid.profiles import CompactProfile, ProfileArray, profile_stats
from market_sim.grid.sensitivities import element_case_bus, injection_sensitivities
from market_sim.grid.validation import validate_iterative
from market_sim.types import DOWN, UP, Limits
from tests.bids import make_bids, random_bids

CODES = ("1-MV-rural--2-sw", "1-MV-semiurb--2-sw")
LIMITS = Limits()
TOL = 1e-6
#: Midday and evening steps in spring, summer and winter.
STEPS = (96 * 170 + 48, 96 * 100 + 52, 96 * 20 + 76, 96 * 300 + 72)


@pytest.fixture(scope="module", params=CODES)
def dn(request: pytest.FixtureRequest) -> DistributionNetwork:
    return load_network(request.param, pv_scale=2.5)


def validated_book(bids: pd.DataFrame, table: pd.DataFrame, direction: str) -> pd.DataFrame:
    validated = table.set_index("bid_id")["validated_mw"]
    sel = bids[bids["direction"] == direction]
    return sel.assign(mw=validated.loc[sel["bid_id"]].to_numpy())


def no_worse_than_baseline(dn: DistributionNetwork, d: PowerFlowDetail, base: PowerFlowDetail):
    """Within limits, or where the baseline already violates them, not worse than it."""
    assert d.result.converged
    mon = monitored_buses(dn.net)
    vmax = np.fmax(LIMITS.vm_max_pu, base.vm_pu[mon])
    vmin = np.fmin(LIMITS.vm_min_pu, base.vm_pu[mon])
    assert np.all(d.vm_pu[mon] <= vmax + TOL)
    assert np.all(d.vm_pu[mon] >= vmin - TOL)
    for now, before in (
        (d.line_loading_percent, base.line_loading_percent),
        (d.trafo_loading_percent, base.trafo_loading_percent),
    ):
        ok = np.isfinite(now)
        assert np.all(now[ok] <= np.fmax(LIMITS.max_loading_percent, before[ok]) + TOL)


# ------------------------------------------------------------------------------------------
# network


def test_load_network(dn: DistributionNetwork) -> None:
    net = dn.net
    assert dn.profiles["load_p"].shape == (35136, len(net.load))
    assert dn.profiles["sgen_p"].shape == (35136, len(net.sgen))
    assert dn.pv_mask.dtype == bool and dn.pv_mask.any()
    assert dn.interface_bus == int(net.ext_grid.bus.iloc[0])
    assert len(dn.storage_p_max_mw) == len(net.storage) and (dn.storage_p_max_mw > 0).all()
    # SimBench leaves the tap changer type empty; pandapower 3 would ignore tap_pos.
    assert (net.trafo["tap_changer_type"] == "Ratio").all()
    inj = dn.baseline(STEPS[0])
    assert np.all(inj.p_mw["storage"] == 0) and np.all(inj.q_mvar["sgen"] == 0)
    tapped = inj.copy()
    tapped.trafo_tap_pos = tapped.trafo_tap_pos + 3
    assert run_power_flow(dn, tapped, LIMITS).vm_max_pu < run_power_flow(dn, inj, LIMITS).vm_max_pu


def test_pv_scale_only_scales_pv() -> None:
    one = load_network(CODES[0])
    two = load_network(CODES[0], pv_scale=2.0, storage_scale=3.0, load_scale=0.5)
    pv = one.pv_mask
    np.testing.assert_allclose(two.profiles["sgen_p"][:, pv], 2 * one.profiles["sgen_p"][:, pv])
    np.testing.assert_allclose(two.profiles["sgen_p"][:, ~pv], one.profiles["sgen_p"][:, ~pv])
    np.testing.assert_allclose(two.profiles["load_q"], 0.5 * one.profiles["load_q"])
    np.testing.assert_allclose(two.storage_e_max_mwh, 3 * one.storage_e_max_mwh)


def test_lazy_profiles_equal_eager_scaling(tmp_path, monkeypatch) -> None:
    """Rows, whole-year row sums and column extremes equal an eager ``raw * factor``, bitwise.

    The eager reference is column-major, like SimBench's arrays (and the cached profiles
    before they were memory-mapped), whose row sums add the columns in order.
    """
    monkeypatch.setenv("MARKET_SIM_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    eager = np.asfortranarray(rng.normal(size=(1100, 37)))
    col = rng.uniform(0.5, 2.0, 37)
    raw = CompactProfile.dense(eager)
    lazy = ProfileArray(raw, (), profile_stats(raw))
    for scaled, ref in (
        (lazy, eager),
        (lazy.scaled(0.7), eager * 0.7),
        (lazy.scaled(col).scaled(1.5), eager * col[None, :] * 1.5),
    ):
        assert scaled.shape == ref.shape
        assert np.array_equal(scaled[123], ref[123])
        assert np.array_equal(scaled[10:20, 3:5], ref[10:20, 3:5])
        assert np.array_equal(scaled[:, col > 1], ref[:, col > 1])
        assert np.array_equal(np.asarray(scaled), ref)
        assert np.array_equal(scaled.sum(axis=1), ref.sum(axis=1))
        assert np.array_equal(scaled.max(axis=0), ref.max(axis=0))
        assert np.array_equal(scaled.min(axis=0), ref.min(axis=0))
    assert lazy.scaled(1.0) is lazy


def test_profile_cache_is_versioned_and_compact(tmp_path, monkeypatch) -> None:
    """A second load reads the cache written by the first; other versions are never read."""
    monkeypatch.setenv("MARKET_SIM_CACHE", str(tmp_path))
    first = load_network(CODES[0], pv_scale=2.0)
    cached = list((tmp_path / "profiles").iterdir())
    assert len(cached) == 1 and f"__v{PROFILE_CACHE_VERSION}__" in cached[0].name
    again = load_network(CODES[0], pv_scale=2.0)
    assert isinstance(again.profiles["load_p"]._raw, CompactProfile)
    for key in first.profiles:
        assert np.array_equal(first.profiles[key][500], again.profiles[key][500])
    stale = (
        tmp_path
        / "profiles"
        / cached[0].name.replace(
            f"__v{PROFILE_CACHE_VERSION}__", f"__v{PROFILE_CACHE_VERSION - 1}__"
        )
    )
    cached[0].rename(stale)
    fresh = load_network(CODES[0], pv_scale=2.0)  # rebuilt, not read from the stale name
    assert np.array_equal(fresh.profiles["load_p"][500], first.profiles["load_p"][500])
    assert (tmp_path / "profiles" / cached[0].name / "manifest.json").exists()


def test_unknown_code_raises() -> None:
    with pytest.raises(ValueError, match="1-MV-nowhere--9-sw"):
        load_network("1-MV-nowhere--9-sw")


def test_profile_steps() -> None:
    assert step_of("2016-01-01 00:00") == 0
    assert step_of(pd.Timestamp("2016-01-02 00:15")) == 97
    assert step_of("2023-01-02 00:15") == 97  # other years map onto the SimBench year
    assert profile_step(pd.Timestamp("2016-01-01"), 3, 60) == 12
    assert profile_step("2016-12-31 23:45", 1, 15) == 0  # wraps around


# ------------------------------------------------------------------------------------------
# power flow


def assert_matches_runpp(dn: DistributionNetwork, d, loading_atol: float) -> None:
    """The fast power flow ``d`` (tables written) gives what pandapower's runpp gives."""
    pp.runpp(dn.net, numba=False, calculate_voltage_angles=True)
    np.testing.assert_allclose(d.vm_pu, dn.net.res_bus.vm_pu.to_numpy(), atol=TOL)
    np.testing.assert_allclose(
        d.line_loading_percent, dn.net.res_line.loading_percent.to_numpy(), atol=loading_atol
    )
    np.testing.assert_allclose(
        d.trafo_loading_percent, dn.net.res_trafo.loading_percent.to_numpy(), atol=loading_atol
    )
    p_ext = -dn.net.res_ext_grid.p_mw.sum()
    assert d.result.interface_p_mw == pytest.approx(p_ext, abs=TOL)


def test_power_flow_matches_pandapower(dn: DistributionNetwork) -> None:
    for step in STEPS[:2]:
        d = run_power_flow_detailed(dn, dn.baseline(step), LIMITS)  # writes the tables
        assert d.result.converged
        assert_matches_runpp(dn, d, loading_atol=1e-5)


def test_apply_bids_signs(dn: DistributionNetwork) -> None:
    net = dn.net
    inj = dn.baseline(STEPS[0])
    bids = make_bids(
        [
            ("load", net.load.index[0], UP, 0.1),
            ("load", net.load.index[0], UP, 0.2),
            ("sgen", net.sgen.index[1], DOWN, 0.3),
            ("storage", net.storage.index[2], UP, 0.4),
        ]
    )
    out = apply_bids(dn, inj, bids)
    assert out.p_mw["load"][0] == pytest.approx(inj.p_mw["load"][0] - 0.3)
    assert out.p_mw["sgen"][1] == pytest.approx(inj.p_mw["sgen"][1] - 0.3)
    assert out.p_mw["storage"][2] == pytest.approx(-0.4)  # discharging
    assert inj.p_mw["storage"][2] == 0  # input untouched


def test_replay_reproduces_run() -> None:
    dn = load_network(CODES[1], pv_scale=2.5)
    inj = dn.baseline(STEPS[0])
    inj.trafo_tap_pos = inj.trafo_tap_pos + 1
    inj = apply_bids(dn, inj, make_bids([("storage", dn.net.storage.index[3], DOWN, 0.5)]))
    ours = run_power_flow(dn, inj, LIMITS)
    ref = replay_power_flow(dn.code, injections_table(dn, inj), LIMITS)
    assert ref.converged and ours.converged
    for name, value in vars(ours).items():
        assert getattr(ref, name) == pytest.approx(value, abs=TOL), name


# ------------------------------------------------------------------------------------------
# validation


def test_validation_makes_bids_safe(dn: DistributionNetwork) -> None:
    rng = np.random.default_rng(42)
    unchecked_violations = 0
    strict_cases = 0
    for step in STEPS:
        inj = dn.baseline(step)
        base = run_power_flow_detailed(dn, inj, LIMITS)
        bids = random_bids(dn, inj, rng, scale=3.0)
        res = validate_iterative(dn, inj, bids, LIMITS)
        assert res.converged, res.message
        table = res.table
        assert list(table["bid_id"]) == list(bids["bid_id"])
        assert (table["validated_mw"] >= 0).all()
        assert (table["validated_mw"].to_numpy() <= bids["mw"].to_numpy() + 1e-12).all()
        for direction in (UP, DOWN):
            offered = bids[bids["direction"] == direction]
            unchecked = run_power_flow(dn, apply_bids(dn, inj, offered), LIMITS)
            unchecked_violations += (not unchecked.converged) or unchecked.n_violations > 0
            book = validated_book(bids, table, direction)
            d = run_power_flow_detailed(dn, apply_bids(dn, inj, book), LIMITS)
            no_worse_than_baseline(dn, d, base)
            if base.result.within_limits:
                strict_cases += 1
                assert d.result.within_limits, (step, direction, d.result)
    assert unchecked_violations > 0
    assert strict_cases > 0


def test_absurd_bids_are_cut_or_rejected(dn: DistributionNetwork) -> None:
    net = dn.net
    inj = dn.baseline(STEPS[1])
    bids = make_bids(
        [
            ("load", net.load.index[5], UP, 1000.0),
            ("sgen", net.sgen.index[3], UP, 1000.0),
            ("load", net.load.index[7], DOWN, 1000.0),
            ("storage", net.storage.index[1], DOWN, 500.0),
        ]
    )
    assert not run_power_flow(dn, apply_bids(dn, inj, bids[bids.direction == UP]), LIMITS).converged
    base = run_power_flow_detailed(dn, inj, LIMITS)
    res = validate_iterative(dn, inj, bids, LIMITS)
    mw = res.table["validated_mw"].to_numpy()
    assert (mw >= 0).all() and (mw <= bids["mw"].to_numpy()).all()
    if not res.converged:
        assert res.table["reason"].str.startswith("rejected").any()
    for direction in (UP, DOWN):
        book = validated_book(bids, res.table, direction)
        no_worse_than_baseline(
            dn, run_power_flow_detailed(dn, apply_bids(dn, inj, book), LIMITS), base
        )


def test_non_converging_baseline_rejects_everything(dn: DistributionNetwork) -> None:
    inj = dn.baseline(STEPS[0])
    inj.p_mw["load"] = inj.p_mw["load"] * 100.0
    result = run_power_flow(dn, inj, LIMITS)
    assert not result.converged and np.isnan(result.vm_max_pu) and result.n_violations == 0
    bids = make_bids([("load", dn.net.load.index[0], UP, 0.1)])
    res = validate_iterative(dn, inj, bids, LIMITS)
    assert not res.converged
    assert (res.table["validated_mw"] == 0).all()
    assert res.table["reason"].str.startswith("rejected").all()


def test_power_flow_does_not_depend_on_history(dn: DistributionNetwork) -> None:
    """Warm starts from earlier solutions change nothing beyond the solver tolerance."""
    inj = dn.baseline(STEPS[0])
    first = run_power_flow_detailed(dn, inj, LIMITS, write=False)
    run_power_flow_detailed(dn, dn.baseline(STEPS[2]), LIMITS, write=False)
    again = run_power_flow_detailed(dn, inj, LIMITS, write=False, warm_start=first)
    np.testing.assert_allclose(again.vm_pu, first.vm_pu, atol=1e-9)


def test_sensitivities_match_finite_differences(dn: DistributionNetwork) -> None:
    inj = dn.baseline(STEPS[0])
    base = run_power_flow_detailed(dn, inj, LIMITS, write=False)
    bus = int(np.nanargmin(np.where(monitored_buses(dn.net), base.vm_pu, np.nan)))
    line = int(np.nanargmax(base.line_loading_percent))
    constraints = [("vm", bus), ("line", line), ("trafo", 0)]
    sens = injection_sensitivities(base, constraints)
    pos = int(np.argmax(inj.p_mw["load"]))
    case_bus = element_case_bus(base, "load", np.array([pos]))[0]
    step = 1e-3  # MW of injection, i.e. less load
    moved = inj.copy()
    moved.p_mw["load"][pos] -= step
    d = run_power_flow_detailed(dn, moved, LIMITS, write=False)
    numeric = [
        (d.vm_pu[bus] - base.vm_pu[bus]) / step,
        (d.line_loading_percent[line] - base.line_loading_percent[line]) / step,
        (d.trafo_loading_percent[0] - base.trafo_loading_percent[0]) / step,
    ]
    np.testing.assert_allclose(sens[:, case_bus], numeric, rtol=1e-2, atol=1e-5)


def test_unsupported_network_falls_back_to_pandapower() -> None:
    """Two ext_grids: lightsim2grid would distribute the slack, so runpp solves it."""
    one = load_network(CODES[0])
    net = copy.deepcopy(one.net)
    pp.create_ext_grid(net, int(net.trafo.hv_bus.iloc[-1]), vm_pu=net.ext_grid.vm_pu.iloc[0])
    dn = dataclasses.replace(one, net=net, solver_cache={})
    d = run_power_flow_detailed(dn, dn.baseline(STEPS[0]), LIMITS)
    assert d.result.converged and d.state is None
    assert "ext_grid" in d.runpp_reason  # visible, so that a run can record the fallback
    assert injection_sensitivities(d, [("vm", 5)]) is None
    pp.runpp(net, numba=False, calculate_voltage_angles=True)
    np.testing.assert_allclose(d.vm_pu, net.res_bus.vm_pu.to_numpy(), atol=TOL)


def test_a_bug_in_the_power_flow_is_not_non_convergence(
    dn: DistributionNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the solvers' own failures mean "not converged"; any other error propagates."""
    from market_sim.grid import lightsim_model

    assert run_power_flow_detailed(dn, dn.baseline(STEPS[0]), LIMITS).runpp_reason == ""

    def broken(model, v):
        raise TypeError("a programming error")

    lightsim_model.forget_models(dn)  # else the point's kept solution answers
    monkeypatch.setattr(lightsim_model, "_flows", broken)
    with pytest.raises(TypeError):
        run_power_flow_detailed(dn, dn.baseline(STEPS[0]), LIMITS)


def test_a_point_solved_again_is_the_kept_solution(
    dn: DistributionNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same set-points from the no-load start are solved once: the second power flow
    returns the first one's arrays (read-only), a warm start or another point solves anew,
    and a checkpoint's fresh models keep nothing."""
    from market_sim.grid import lightsim_model

    lightsim_model.forget_models(dn)  # the fixture's network has solved these points before
    solves = []
    solve = lightsim_model._solve
    monkeypatch.setattr(lightsim_model, "_solve", lambda m, v: solves.append(1) or solve(m, v))
    first = run_power_flow_detailed(dn, dn.baseline(STEPS[0]), LIMITS, write=False)
    again = run_power_flow_detailed(dn, dn.baseline(STEPS[0]), LIMITS, write=False)
    assert len(solves) == 1 and again.flows is first.flows
    assert not first.vm_pu.flags.writeable and not first.state.v.flags.writeable
    run_power_flow_detailed(dn, dn.baseline(STEPS[0]), LIMITS, warm_start=first)
    other = run_power_flow_detailed(dn, dn.baseline(STEPS[1]), LIMITS, write=False)
    assert len(solves) == 3 and not np.array_equal(other.vm_pu, first.vm_pu, equal_nan=True)
    lightsim_model.forget_models(dn)
    fresh = run_power_flow_detailed(dn, dn.baseline(STEPS[0]), LIMITS, write=False)
    assert len(solves) == 4
    np.testing.assert_array_equal(fresh.vm_pu, first.vm_pu)


@pytest.mark.slow
def test_power_flow_matches_pandapower_mvlv() -> None:
    """The 10,458-bus MV-LV network (switches fused, open line ends), at two tap settings."""
    dn = load_network("1-MVLV-urban-all-2-sw")
    for step, taps in ((STEPS[0], 0), (STEPS[2], 1)):
        inj = dn.baseline(step)
        inj.trafo_tap_pos = inj.trafo_tap_pos + taps
        d = run_power_flow_detailed(dn, inj, LIMITS)
        assert d.result.converged and d.state is not None
        assert_matches_runpp(dn, d, loading_atol=1e-4)


def test_jacobian_equals_the_coo_assembly(dn: DistributionNetwork) -> None:
    """The Jacobian filled into its fixed CSC pattern is bit for bit the matrix scipy sums
    from the (row, column, value) entries: same structure, same numbers, same zero signs."""
    d = run_power_flow_detailed(dn, dn.baseline(STEPS[0]), LIMITS, write=False)
    model, v = d.state.model, d.state.v
    jac = jacobian(model, v)
    y = model.ybus.tocoo()
    r = np.concatenate([y.row, np.arange(model.ybus.shape[0])])
    c = np.concatenate([y.col, np.arange(model.ybus.shape[0])])
    ibus = model.ybus @ v
    vnorm = v / np.abs(v)
    ds_dva = np.concatenate([-1j * v[y.row] * np.conj(y.data * v[y.col]), 1j * v * np.conj(ibus)])
    ds_dvm = np.concatenate([v[y.row] * np.conj(y.data * vnorm[y.col]), np.conj(ibus) * vnorm])
    a, m = model.a_pos, model.m_pos
    data, rows, cols = [], [], []
    maps = ((a, a), (a, m), (m, a), (m, m))
    parts = (ds_dva.real, ds_dvm.real, ds_dva.imag, ds_dvm.imag)
    for (row_map, col_map), part in zip(maps, parts, strict=True):
        sel = (row_map[r] >= 0) & (col_map[c] >= 0)  # the entries of this block of J
        data.append(part[sel])
        rows.append(row_map[r[sel]])
        cols.append(col_map[c[sel]])
    size = len(model.pvpq) + len(model.pq)
    coo = sp.csc_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
    )
    coo.sort_indices()
    np.testing.assert_array_equal(jac.indptr, coo.indptr)
    np.testing.assert_array_equal(jac.indices, coo.indices)
    assert jac.data.tobytes() == coo.data.tobytes()


def test_element_positions_match_pandas(dn: DistributionNetwork) -> None:
    """Bid elements are located as pandas' get_indexer does: unknown labels and tables -1."""
    labels = np.array([*dn.net.load.index[[3, 0]], 10**9, *dn.net.sgen.index[[1]], 0])
    tables = np.array(["load", "load", "load", "sgen", "gen"], dtype=object)
    want = [
        *dn.net.load.index.get_indexer(labels[:3]),
        dn.net.sgen.index.get_indexer(labels[3:4])[0],
        -1,
    ]
    np.testing.assert_array_equal(element_positions(dn, tables, labels), want)
    np.testing.assert_array_equal(element_positions(dn, tables, labels.astype(float)), want)
