"""P-Q flexibility area of a DSO interface (market_sim.grid.flexibility_area).

Two SimBench MV networks at midsummer noon (PV high, storage idle), with bids from every PV
sgen (curtail down to zero) and every storage (up and down to its power limit). The checks are
the area's promises: its vertices are real AC operating points within the limits, the baseline
lies inside, reactive capability widens Q, the P extremes agree with an independent validation
of pure up / pure down activation, and tighter limits shrink the area.
"""

from __future__ import annotations

import datetime
import time

import numpy as np
import pandas as pd
import pytest

from market_sim.grid.constraints import BidLayout, effective_limits, violations
from market_sim.grid.flexibility_area import FlexibilityArea, flexibility_area
from market_sim.grid.flexibility_lp import interface_and_constraint_sensitivities
from market_sim.grid.injections import apply_bids
from market_sim.grid.linear_opf import validate_direction
from market_sim.grid.network import DistributionNetwork, load_network, profile_step
from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.grid.sensitivities import element_case_bus
from market_sim.types import BID_COLUMNS, DOWN, UP, Injections, Limits

CODES = ("1-MV-semiurb--2-sw", "1-MV-rural--2-sw")
LIMITS = Limits()
TIGHT = Limits(vm_min_pu=0.96, vm_max_pu=1.045, max_loading_percent=70.0)
STEP = profile_step(datetime.date(2016, 6, 21), 48, 15)


def make_bids(dn: DistributionNetwork, baseline: Injections) -> pd.DataFrame:
    """PV curtailment (down to zero) and storage up and down to its power limit."""
    net = dn.net
    rows = []
    for pos in np.flatnonzero(dn.pv_mask):
        p = float(baseline.p_mw["sgen"][pos])
        if p > 1e-3:
            rows.append(("sgen", net.sgen.index[pos], DOWN, p))
    for pos in range(len(net.storage)):
        for direction in (UP, DOWN):
            rows.append(("storage", net.storage.index[pos], direction, dn.storage_p_max_mw[pos]))
    bids = pd.DataFrame(rows, columns=["element", "element_index", "direction", "mw"])
    bids["bid_id"] = np.arange(len(bids))
    bids["prosumer"] = np.arange(len(bids))
    bids["aggregator"] = "agg"
    bids["dso"] = "dso"
    bids["bus"] = [
        int(net[t]["bus"].loc[i]) for t, i in zip(bids.element, bids.element_index, strict=True)
    ]
    bids["price_eur_per_mwh"] = 50.0
    return bids[list(BID_COLUMNS)].astype(BID_COLUMNS)


class Case:
    """One network with its baseline, bids and areas (computed once, timed)."""

    def __init__(self, code: str) -> None:
        self.dn = load_network(code, pv_scale=1.0)
        self.baseline = self.dn.baseline(STEP)
        self.bids = make_bids(self.dn, self.baseline)
        self._areas: dict[tuple[bool, Limits], FlexibilityArea] = {}
        self.seconds: dict[tuple[bool, Limits], float] = {}

    def area(self, reactive: bool = True, limits: Limits = LIMITS) -> FlexibilityArea:
        key = (reactive, limits)
        if key not in self._areas:
            t0 = time.perf_counter()
            self._areas[key] = flexibility_area(
                self.dn, self.baseline, self.bids, limits, reactive=reactive
            )
            self.seconds[key] = time.perf_counter() - t0
        return self._areas[key]


@pytest.fixture(scope="module", params=CODES)
def case(request) -> Case:
    return Case(request.param)


def test_baseline_is_within_limits_and_bids_exist(case):
    """The premise of the checks below: statutory limits hold at the baseline."""
    base = run_power_flow_detailed(case.dn, case.baseline, LIMITS, write=False)
    assert base.result.within_limits
    assert (case.bids.direction == UP).any() and (case.bids.direction == DOWN).any()


def test_sensitivities_match_finite_differences(case):
    """The adjoint's dP/dQ columns (interface and constraints) against perturbed power flows."""
    dn = case.dn
    d0 = run_power_flow_detailed(dn, case.baseline, LIMITS, write=False)
    keys = [
        ("vmax", int(np.nanargmax(d0.vm_pu))),
        ("vmin", int(np.nanargmax(d0.vm_pu))),
        ("line", int(np.nanargmax(d0.line_loading_percent))),
        ("trafo", int(np.nanargmax(d0.trafo_loading_percent))),
    ]
    d_p, d_q = interface_and_constraint_sensitivities(d0, keys)

    def observed(d):
        return np.array(
            [
                d.result.interface_p_mw,
                d.result.interface_q_mvar,
                d.vm_pu[keys[0][1]],
                -d.vm_pu[keys[1][1]],
                d.line_loading_percent[keys[2][1]],
                d.trafo_loading_percent[keys[3][1]],
            ]
        )

    eps = 1e-3
    for table, sign in (("sgen", 1.0), ("storage", -1.0)):  # injection per table unit
        pos = len(dn.net[table]) // 2
        bus = int(element_case_bus(d0, table, np.array([pos]))[0])
        for attr, sens in (("p_mw", d_p), ("q_mvar", d_q)):
            inj = case.baseline.copy()
            getattr(inj, attr)[table][pos] += sign * eps
            d1 = run_power_flow_detailed(dn, inj, LIMITS, write=False)
            fd = (observed(d1) - observed(d0)) / eps
            np.testing.assert_allclose(sens[:, bus], fd, rtol=2e-2, atol=2e-4)


def test_base_point_lies_inside(case):
    area = case.area()
    assert area.verified and len(area.vertices) >= 4
    assert area.contains(area.base_p_mw, area.base_q_mvar)
    # Strictly inside: flexibility in every direction, not a vertex of the hull.
    for theta in np.linspace(0, 2 * np.pi, 8, endpoint=False):
        base = np.cos(theta) * area.base_p_mw + np.sin(theta) * area.base_q_mvar
        assert area.support_value(theta) > base + 0.1, theta


def test_vertices_are_verified_operating_points(case):
    """Each vertex re-run from its set-points: same interface P, Q and no violated limit."""
    dn, area = case.dn, case.area()
    assert len(area.operating_points) == len(area.vertices) == area.bid_mw.shape[0]
    base = run_power_flow_detailed(dn, case.baseline, LIMITS, write=False)
    caps = effective_limits(dn, base, LIMITS)
    net = dn.net
    for i, inj in enumerate(area.operating_points):
        d = run_power_flow_detailed(dn, inj, LIMITS)  # fresh, written into the net
        assert d.result.converged
        assert d.result.interface_p_mw == pytest.approx(area.vertices.p_mw.iloc[i], abs=1e-3)
        assert d.result.interface_q_mvar == pytest.approx(area.vertices.q_mvar.iloc[i], abs=1e-3)
        assert d.result.within_limits, d.result
        assert not violations(dn, d, caps)
        # The active set-points are exactly the reported bid activation.
        bids = case.bids.assign(mw=area.bid_mw[i])
        assert (area.bid_mw[i] >= -1e-9).all()
        assert (area.bid_mw[i] <= case.bids.mw.to_numpy() + 1e-9).all()
        expected = apply_bids(dn, case.baseline, bids)
        for table in ("load", "sgen", "storage"):
            np.testing.assert_allclose(inj.p_mw[table], expected.p_mw[table], atol=1e-9)
        # Reactive set-points only on PV and storage, within the inverter rating.
        np.testing.assert_array_equal(inj.q_mvar["load"], case.baseline.q_mvar["load"])
        moved = inj.q_mvar["sgen"] != case.baseline.q_mvar["sgen"]
        assert dn.pv_mask[moved].all()
        for table in ("sgen", "storage"):
            s = np.hypot(inj.p_mw[table], inj.q_mvar[table])
            sn = net[table]["sn_mva"].to_numpy(float)
            assert (s[inj.q_mvar[table] != 0] <= sn[inj.q_mvar[table] != 0] + 1e-9).all()


def test_reactive_capability_widens_q(case):
    full, p_only = case.area(reactive=True), case.area(reactive=False)
    q_full = full.q_max_mvar - full.q_min_mvar
    q_p_only = p_only.q_max_mvar - p_only.q_min_mvar
    assert q_full > 10.0  # Mvar: tens of MVA of inverters
    assert q_p_only < 0.2 * q_full
    for table in ("sgen", "storage"):
        for inj in p_only.operating_points:
            np.testing.assert_array_equal(inj.q_mvar[table], case.baseline.q_mvar[table])
    # Reactive capability only adds options (absorbing Q lowers voltages): P reaches as far.
    assert full.p_max_mw >= p_only.p_max_mw - 0.05
    assert full.p_min_mw <= p_only.p_min_mw + 0.05


def test_p_range_matches_pure_up_and_down_validation(case):
    """The P extremes against linear_opf's validation of the up bids and of the down bids.

    Both are AC-verified, so neither may exceed full activation; the area maximises interface
    P itself and re-linearises once, so it should get at least as far as a max-volume
    validation up to a small tolerance (1 % of the range).
    """
    dn, area = case.dn, case.area(reactive=False)
    base = run_power_flow_detailed(dn, case.baseline, LIMITS, write=False)
    caps = effective_limits(dn, base, LIMITS)
    span = area.p_max_mw - area.p_min_mw
    for direction in (UP, DOWN):
        bids = case.bids[case.bids.direction == direction].reset_index(drop=True)
        layout = BidLayout.of(dn, bids)
        outcome = validate_direction(dn, case.baseline, base, bids, caps, LIMITS)
        ref = run_power_flow_detailed(
            dn, layout.injections(case.baseline, outcome.x), LIMITS, write=False
        ).result
        full = run_power_flow_detailed(
            dn, layout.injections(case.baseline, layout.offered), LIMITS, write=False
        ).result
        if direction == UP:
            assert area.p_max_mw > area.base_p_mw + 1.0
            assert area.p_max_mw >= ref.interface_p_mw - 0.01 * span
            assert area.p_max_mw <= full.interface_p_mw + 1e-6
            if full.within_limits:
                assert area.p_max_mw == pytest.approx(full.interface_p_mw, abs=1e-3)
        else:
            assert area.p_min_mw < area.base_p_mw - 1.0
            assert area.p_min_mw <= ref.interface_p_mw + 0.01 * span
            assert area.p_min_mw >= full.interface_p_mw - 1e-6
            if full.within_limits:
                assert area.p_min_mw == pytest.approx(full.interface_p_mw, abs=1e-3)


def test_tighter_limits_give_a_smaller_area(case):
    """Support function of the tight area below the loose one's in every direction.

    TIGHT lowers vm_max below the rural baseline's 1.049 pu, so some of its constraints have no
    headroom at all (effective limit = baseline value): the hardest case for the LP model.
    Both areas are inner approximations found by a heuristic, so the order holds up to a
    small tolerance, not exactly.
    """
    loose, tight = case.area(), case.area(limits=TIGHT)
    assert tight.verified
    margins = [
        loose.support_value(theta) - tight.support_value(theta)
        for theta in np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ]
    assert min(margins) >= -0.05
    assert max(margins) > 0.5  # and the tighter limits do bind somewhere
    assert tight.q_max_mvar - tight.q_min_mvar < loose.q_max_mvar - loose.q_min_mvar


def test_timing_and_counts(case):
    """Reported work is consistent and an area costs about a second on these networks."""
    area = case.area()
    assert area.lp_solves >= 16 and area.ac_power_flows > area.lp_solves // 2
    assert area.compute_s < 10.0
    assert len(area.support) <= 16


def test_no_flexibility_and_failed_baseline_do_not_raise():
    dn = load_network(CODES[0], pv_scale=1.0)
    baseline = dn.baseline(STEP)
    empty = make_bids(dn, baseline).iloc[0:0]
    area = flexibility_area(dn, baseline, empty, LIMITS, reactive=False)
    assert len(area.vertices) == 1 and not area.verified
    assert area.p_min_mw == area.p_max_mw == pytest.approx(area.base_p_mw)

    broken = baseline.copy()
    broken.p_mw["load"] = broken.p_mw["load"] * 200.0  # no power-flow solution
    area = flexibility_area(dn, broken, make_bids(dn, baseline), LIMITS)
    assert not area.verified and len(area.vertices) == 1
    assert "converge" in area.message
