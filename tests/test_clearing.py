"""Tests of the transmission market clearing (energy schedule and balancing market)."""

from __future__ import annotations

import copy

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pandas as pd
import pytest
from scipy import sparse

from market_sim.markets.balancing import BalancingMarket
from market_sim.markets.offers import ter_offers
from market_sim.markets.persistent import LoadedModel
from market_sim.markets.schedule import EnergySchedule, ScheduleResult
from market_sim.markets.transmission import from_pandapower, load_case, network_from_arrays

VOLL = 3000.0


def _offers(rows: list[tuple[int, int, str, float, float]]) -> pd.DataFrame:
    """Offer book from (offer_id, bus, direction, mw, price) tuples."""
    return pd.DataFrame(
        {
            "offer_id": pd.Series([r[0] for r in rows], dtype="int64"),
            "bus": pd.Series([r[1] for r in rows], dtype="int64"),
            "direction": pd.Series([r[2] for r in rows], dtype="string"),
            "mw": pd.Series([r[3] for r in rows], dtype="float64"),
            "price_eur_per_mwh": pd.Series([r[4] for r in rows], dtype="float64"),
        }
    )


def _accepted_mw(result, offer_ids) -> np.ndarray:
    acc = result.accepted.set_index("offer_id")["mw"]
    return acc.reindex(list(offer_ids), fill_value=0.0).to_numpy()


def _pp_dispatch(net) -> pd.Series:
    parts = {}
    for table in ("ext_grid", "gen", "sgen"):
        for i, p in net[f"res_{table}"]["p_mw"].items():
            if table != "sgen" or net.sgen.at[i, "controllable"]:
                parts[f"{table} {i}"] = p
    return pd.Series(parts)


def _triangle(rating: float = 1000.0):
    """Three buses, stiff lines, nothing binding unless ``rating`` says so."""
    return network_from_arrays(
        n_buses=3, branches=[(0, 1, 0.1, rating), (1, 2, 0.1, rating), (0, 2, 0.1, rating)]
    )


# ---- energy schedule ---------------------------------------------------------------------------


def _assert_matches_rundcopp(net, network, result, price_atol: float) -> None:
    """Objective, dispatch of every OPF generator and nodal prices (res_bus.lam_p) agree."""
    assert result.ok, result.message
    assert result.cost_eur_per_h == pytest.approx(net.res_cost, rel=1e-4)
    expected = _pp_dispatch(net)
    assert set(result.gen_mw.index) == set(expected.index)
    np.testing.assert_allclose(result.gen_mw[expected.index], expected, atol=1e-3)
    lam = net.res_bus["lam_p"].to_numpy()
    pos = network.bus_position(net.bus.index.to_numpy())
    np.testing.assert_allclose(result.price_eur_per_mwh[pos], lam, atol=price_atol)


@pytest.mark.parametrize("case", ["case9", "case30", "case39", "case57", "case118", "case300"])
def test_schedule_matches_rundcopp(case):
    net = getattr(pn, case)()
    pp.rundcopp(net)
    network = from_pandapower(net, name=case)
    result = EnergySchedule(network).solve(network.base_load_mw)
    _assert_matches_rundcopp(net, network, result, price_atol=1e-4)


def _congest(net, n_lines: int = 3, share: float = 0.8) -> None:
    """Rate the ``n_lines`` most loaded lines of the unconstrained optimum at ``share`` of their
    flow, so that they bind. Lines carrying the same flow (in series on a radial spur) are
    skipped: two binding limits on one flow make the spur's nodal price ambiguous, and then any
    split of the congestion rent is optimal and the comparison would be meaningless."""
    pp.rundcopp(net)
    flow = net.res_line["p_from_mw"].abs()
    top = flow.round(6).drop_duplicates().nlargest(n_lines).index
    vn_kv = net.bus.loc[net.line.loc[top, "from_bus"], "vn_kv"].to_numpy()
    net.line.loc[top, "max_i_ka"] = share * flow.loc[top].to_numpy() / (np.sqrt(3) * vn_kv)
    net.line.loc[top, "max_loading_percent"] = 100.0


@pytest.mark.parametrize("case", ["case57", "case118", "case300"])
def test_congested_schedule_matches_rundcopp(case):
    net = getattr(pn, case)()
    _congest(net)
    pp.rundcopp(net)
    assert np.ptp(net.res_bus["lam_p"]) > 1.0  # only meaningful if prices separate
    network = from_pandapower(net, name=f"{case} congested")
    result = EnergySchedule(network).solve(network.base_load_mw)
    _assert_matches_rundcopp(net, network, result, price_atol=1e-3)


def test_schedule_congested_prices_match_rundcopp():
    net = pn.case39()
    net.line["max_loading_percent"] = 70.0  # makes lines bind (65 % is infeasible)
    pp.rundcopp(net)
    network = from_pandapower(net, name="case39 tight")
    result = EnergySchedule(network).solve(network.base_load_mw)
    assert np.ptp(net.res_bus["lam_p"]) > 1.0
    _assert_matches_rundcopp(net, network, result, price_atol=1e-3)


def test_schedule_resolve_after_load_change():
    network = load_case("case39")
    schedule = EnergySchedule(network)
    high = schedule.solve(network.base_load_mw * 1.05)
    base = schedule.solve(network.base_load_mw)
    fresh = EnergySchedule(network).solve(network.base_load_mw)
    assert high.ok and base.ok
    assert high.cost_eur_per_h > base.cost_eur_per_h
    np.testing.assert_allclose(base.gen_mw, fresh.gen_mw, atol=1e-6)


def test_schedule_falls_back_to_pips_when_highs_fails(monkeypatch):
    net = pn.case39()
    pp.rundcopp(net)
    network = from_pandapower(net, name="case39")
    schedule = EnergySchedule(network)
    monkeypatch.setattr(LoadedModel, "run", lambda self: "forced error")
    result = schedule.solve(network.base_load_mw)

    assert result.ok and "PIPS" in result.message
    assert result.cost_eur_per_h == pytest.approx(net.res_cost, rel=1e-6)
    expected = _pp_dispatch(net)
    np.testing.assert_allclose(result.gen_mw[expected.index], expected, atol=1e-3)
    np.testing.assert_allclose(result.price_eur_per_mwh, net.res_bus["lam_p"], atol=1e-3)


def test_schedule_infeasible_returns_not_ok():
    network = load_case("case39")
    schedule = EnergySchedule(network)
    result = schedule.solve(network.base_load_mw * 10.0)  # far beyond generation capacity
    assert not result.ok
    assert result.message
    assert np.isnan(result.cost_eur_per_h)
    assert schedule.solve(network.base_load_mw).ok  # and the model is still usable


def test_load_case_unknown_or_without_costs():
    with pytest.raises(ValueError, match="case_nope.*case39"):
        load_case("case_nope")
    with pytest.raises(ValueError, match="case4gs.*no generator cost"):
        load_case("case4gs")


# ---- balancing market ----------------------------------------------------------------------------


@pytest.mark.parametrize("direction, sign", [("up", 1.0), ("down", -1.0)], ids=["up", "down"])
def test_merit_order(direction, sign):
    # Up offers cost 10, 20, 30; down offers "cost" -10, -20, -30: the provider pays, and the
    # one that pays most (the cheapest for the TSO) goes first.
    prices = {"up": [10.0, 20.0, 30.0], "down": [-30.0, -20.0, -10.0]}[direction]
    offers = _offers([(k, k, direction, 50.0, p) for k, p in enumerate(prices)])
    need = np.array([0.0, sign * 80.0, 0.0])
    result = BalancingMarket(_triangle(), VOLL).clear(offers, need, np.zeros(3))

    assert result.ok, result.message
    np.testing.assert_allclose(_accepted_mw(result, [0, 1, 2]), [50.0, 30.0, 0.0], atol=1e-6)
    # Nodal price of injection is 20 everywhere: up clears at +20, down at -20.
    np.testing.assert_allclose(result.price_eur_per_mwh, 20.0, atol=1e-5)
    assert result.unserved_up_mw == pytest.approx(0.0, abs=1e-9)
    assert result.unserved_down_mw == pytest.approx(0.0, abs=1e-9)
    assert result.cost_eur == pytest.approx(
        sum(p * q for p, q in zip(prices, [50, 30, 0], strict=True))
    )


def test_price_separation_with_binding_line():
    network = network_from_arrays(n_buses=2, branches=[(0, 1, 0.1, 30.0)])
    offers = _offers([(1, 0, "up", 100.0, 10.0), (2, 1, "up", 100.0, 50.0)])
    result = BalancingMarket(network, VOLL).clear(offers, np.array([0.0, 80.0]), np.zeros(1))

    assert result.ok, result.message
    np.testing.assert_allclose(_accepted_mw(result, [1, 2]), [30.0, 50.0], atol=1e-6)
    np.testing.assert_allclose(result.price_eur_per_mwh, [10.0, 50.0], atol=1e-5)


def test_base_flow_uses_up_line_capacity():
    network = network_from_arrays(n_buses=2, branches=[(0, 1, 0.1, 30.0)])
    offers = _offers([(1, 0, "up", 100.0, 10.0), (2, 1, "up", 100.0, 50.0)])
    market = BalancingMarket(network, VOLL)
    result = market.clear(offers, np.array([0.0, 80.0]), np.array([20.0]))
    np.testing.assert_allclose(_accepted_mw(result, [1, 2]), [10.0, 70.0], atol=1e-6)

    # A base flow above the rating relaxes the limit to the base flow: no further deviation.
    over = market.clear(offers, np.array([0.0, 80.0]), np.array([45.0]))
    assert over.ok and over.relaxed_branches == ("line 0",)
    assert "relaxed" in over.message
    np.testing.assert_allclose(_accepted_mw(over, [1, 2]), [0.0, 80.0], atol=1e-6)


@pytest.mark.parametrize("direction, sign", [("up", 1.0), ("down", -1.0)], ids=["up", "down"])
def test_unmet_need_goes_to_slack_at_voll(direction, sign):
    offers = _offers([(1, 0, direction, 50.0, sign * 10.0)])
    result = BalancingMarket(_triangle(), VOLL).clear(offers, np.array([0.0, sign * 70.0, 0.0]))

    assert result.ok, result.message
    np.testing.assert_allclose(_accepted_mw(result, [1]), [50.0], atol=1e-6)
    unserved = result.unserved_up_mw if sign > 0 else result.unserved_down_mw
    other = result.unserved_down_mw if sign > 0 else result.unserved_up_mw
    assert unserved == pytest.approx(20.0, abs=1e-6)
    assert other == pytest.approx(0.0, abs=1e-9)
    # Extra need for injection costs VOLL when short; when long, less need saves VOLL.
    np.testing.assert_allclose(result.price_eur_per_mwh, sign * VOLL, atol=1e-6)
    assert result.cost_eur == pytest.approx(sign * 10.0 * 50.0 + VOLL * 20.0)


def test_empty_offers_without_ter_all_to_slack():
    # Needs at different buses net out through the network: only 3 MW are missing.
    result = BalancingMarket(_triangle(), VOLL).clear(_offers([]), np.array([5.0, 0.0, -2.0]))
    assert result.ok, result.message
    assert result.accepted.empty
    assert result.unserved_up_mw == pytest.approx(3.0)
    assert result.unserved_down_mw == pytest.approx(0.0, abs=1e-9)
    assert result.cost_eur == pytest.approx(3.0 * VOLL)


def test_ter_offers_do_not_wash_trade():
    # Unconstrained case39 generators share one marginal cost, so any up/down pair of TER
    # offers nets to zero cost: only the tie-break keeps the activated volume at the need.
    rng = np.random.default_rng(3)
    network = load_case("case39")
    schedule = EnergySchedule(network).solve(network.base_load_mw)
    market = BalancingMarket(network, VOLL)
    for _ in range(10):
        need = np.zeros(network.n_buses)
        need[rng.integers(0, network.n_buses, 2)] = rng.uniform(-40.0, 40.0, 2)
        offers = ter_offers(network, schedule, ramp_mw=rng.uniform(20.0, 60.0))
        result = market.clear(offers, need, schedule.flow_mw)
        assert result.ok, result.message
        assert result.accepted["mw"].sum() == pytest.approx(abs(need.sum()), abs=1e-6)


def test_built_once_matches_fresh_model():
    rng = np.random.default_rng(7)
    network = load_case("case39")
    schedule = EnergySchedule(network).solve(network.base_load_mw)
    market = BalancingMarket(network, VOLL, slots_per_bus=1)  # small, to force rebuilds
    for period in range(20):
        n = int(rng.integers(0, 40))
        der = _offers(
            [
                (
                    1000 * period + k,
                    int(rng.choice(network.bus_ids[:10])),
                    str(rng.choice(["up", "down"])),
                    float(rng.uniform(0.0, 30.0)),
                    float(rng.uniform(-50.0, 80.0)),
                )
                for k in range(n)
            ]
        )
        ter = ter_offers(network, schedule, ramp_mw=rng.uniform(0.0, 50.0))
        # Unconstrained generators share one marginal cost, so their offers tie and the split
        # between them is arbitrary; jitter the prices so the comparison is well posed.
        ter["price_eur_per_mwh"] += rng.uniform(-0.5, 0.5, len(ter))
        offers = pd.concat([der, ter.drop(columns="element")], ignore_index=True)
        need = np.zeros(network.n_buses)
        need[rng.integers(0, network.n_buses, 3)] = rng.normal(0.0, 80.0, 3)

        kept = market.clear(offers, need, schedule.flow_mw)
        fresh = BalancingMarket(network, VOLL).clear(offers, need, schedule.flow_mw)
        assert kept.ok and fresh.ok
        ids = offers["offer_id"]
        np.testing.assert_allclose(_accepted_mw(kept, ids), _accepted_mw(fresh, ids), atol=1e-6)
        assert kept.cost_eur == pytest.approx(fresh.cost_eur, rel=1e-9, abs=1e-6)
    assert market.capacity.max() > 1  # the overflow path was exercised


def test_kept_models_clear_as_freshly_built_ones():
    """A checkpoint returns to the initial slot capacity and overflows grow it again: the
    models kept per capacity then clear bit for bit as new builds (and new markets) do."""
    network = load_case("case39")
    schedule = EnergySchedule(network).solve(network.base_load_mw)
    ter = ter_offers(network, schedule, ramp_mw=30.0).drop(columns="element")
    bus = int(network.bus_ids[3])
    crowded = _offers([(k, bus, ("up", "down")[k % 2], 5.0, 10.0 + k) for k in range(9)])
    offers = pd.concat([crowded, ter], ignore_index=True)
    need = np.zeros(network.n_buses)
    need[[3, 8]] = (25.0, -10.0)
    rng = np.random.default_rng(11)
    kept = BalancingMarket(network, VOLL)
    for _ in range(3):  # build, then take both capacities' kept models twice
        kept.forget_warm_start()
        initial = kept.clear(ter, need, schedule.flow_mw)  # the initial capacity
        grown = kept.clear(offers, need, schedule.flow_mw)  # overflows: a larger capacity
        assert initial.ok and grown.ok
        for _ in range(5):  # other periods leave their history in the kept solver
            other = need + rng.normal(0.0, 20.0, network.n_buses)
            rows = (sparse.csr_array(rng.uniform(0.0, 1.0, (2, len(offers)))), np.full(2, 30.0))
            assert kept.clear(offers, other, schedule.flow_mw, rows).ok
        for result, book in ((initial, ter), (grown, offers)):
            fresh = BalancingMarket(network, VOLL).clear(book, need, schedule.flow_mw)
            pd.testing.assert_frame_equal(result.accepted, fresh.accepted, check_exact=True)
            assert np.array_equal(result.price_eur_per_mwh, fresh.price_eur_per_mwh)
            assert result.cost_eur == fresh.cost_eur
    assert len(kept._built) == 3  # the initial capacity, then 4 and 8 slots at the crowded bus


def test_ter_offers():
    network = load_case("case39")
    schedule = EnergySchedule(network).solve(network.base_load_mw)
    ter = ter_offers(network, schedule, ramp_mw=50.0)

    assert (ter["offer_id"] < 0).all() and ter["offer_id"].is_unique
    assert (ter["mw"] > 0).all()
    assert (ter.groupby(["element", "direction"]).mw.sum() <= 50.0 + 1e-9).all()
    gen = network.generators.set_index("element")
    for (element, direction), steps in ter.groupby(["element", "direction"]):
        c0 = gen.at[element, "c0_eur_per_h"]
        c1, c2 = gen.at[element, "c1_eur_per_mwh"], gen.at[element, "c2_eur_per_mw2h"]
        p = schedule.gen_mw[element]
        moved = steps.mw.sum() if direction == "up" else -steps.mw.sum()

        def cost(x, c0=c0, c1=c1, c2=c2):
            return c0 + c1 * x + c2 * x**2

        # the piecewise-linear steps are the quadratic cost curve: exact over the whole range
        assert (steps.price_eur_per_mwh * steps.mw).sum() == pytest.approx(
            abs(cost(p + moved) - cost(p)) * np.sign(moved)
        )
        # marginal costs rise step by step up (and fall down): a merit order within the unit
        order = steps.sort_values("offer_id", ascending=False).price_eur_per_mwh.to_numpy()
        assert (np.diff(order) >= -1e-12).all()
        assert len(steps) == (4 if c2 else 1)
    # ext_grid 0 is scheduled at its maximum, so it offers only down.
    assert set(ter.loc[ter["element"] == "ext_grid 0", "direction"]) == {"down"}

    failed = ScheduleResult(
        False,
        "x",
        schedule.gen_mw * np.nan,
        schedule.flow_mw,
        np.nan,
        schedule.price_eur_per_mwh,
        0.0,
    )
    assert ter_offers(network, failed, 50.0).empty


def test_failed_balancing_solve_returns_not_ok(monkeypatch):
    market = BalancingMarket(_triangle(), VOLL)
    offers = _offers([(1, 0, "up", 50.0, 10.0)])

    class Broken:
        """HiGHS that takes every update but crashes when asked to solve."""

        def __init__(self, highs):
            self.highs = highs

        def run(self):
            raise RuntimeError("solver crashed")

        def __getattr__(self, name):
            return getattr(self.highs, name)

    monkeypatch.setattr(market._lp, "highs", Broken(market._lp.highs))
    result = market.clear(offers, np.array([0.0, 10.0, 0.0]))
    assert not result.ok
    assert "solver crashed" in result.message
    assert np.isnan(result.price_eur_per_mwh).all()


def test_invalid_offers_raise():
    market = BalancingMarket(_triangle(), VOLL)
    with pytest.raises(ValueError, match="buses \\[9\\]"):
        market.clear(_offers([(1, 9, "up", 5.0, 1.0)]), np.zeros(3))
    with pytest.raises(ValueError, match="direction"):
        market.clear(_offers([(1, 0, "sideways", 5.0, 1.0)]), np.zeros(3))


# ---- SimBench EHV grid and fuel costs --------------------------------------------------------

EHV = "1-EHV-mixed--0-sw"


def test_fuel_costs_merit_order_and_no_ties():
    from market_sim.markets.fuel_costs import FUELS, unit_costs

    c1 = {fuel: f.c1_eur_per_mwh for fuel, f in FUELS.items()}
    assert c1["nuclear"] < c1["lignite"] < c1["hard coal"] < c1["gas"] < c1["oil"]
    types = pd.Series(["gas", "gas", "gas", "imp0", "Lignite"])
    cost = unit_costs(types, pd.Series([100.0, 400.0, 100.0, 50.0, 300.0]), spread=0.2)
    assert cost.is_unique  # equal sizes do not tie
    assert cost[1] < cost[2] < cost[0]  # the largest unit is cheapest; equal sizes by position
    assert cost[[0, 1, 2]].between(0.9 * c1["gas"], 1.1 * c1["gas"]).all()
    assert cost[3] == pytest.approx(c1["import"]) and cost[4] == pytest.approx(c1["lignite"])
    with pytest.raises(ValueError, match="'unobtainium'.*known"):
        unit_costs(pd.Series(["unobtainium"]), pd.Series([1.0]))


@pytest.fixture(scope="module")
def ehv_net():
    from market_sim.markets.transmission import simbench_opf_net

    return simbench_opf_net(EHV)


def test_ehv_grid_schedule_matches_rundcopp(ehv_net):
    """Smoke check of the SimBench EHV grid (~6 s, mostly SimBench building the net)."""
    net = copy.deepcopy(ehv_net)
    assert len(net.ext_grid) == 1  # the other six nuclear ext_grids became gens
    assert len(net.poly_cost) == len(net.gen) + len(net.ext_grid) == 345
    network = from_pandapower(net, name=EHV)
    assert len(network.ref_pos) == 1
    assert (network.generators["c1_eur_per_mwh"] > 0).all()
    assert network.generators["c1_eur_per_mwh"].is_unique

    pp.rundcopp(net)
    result = EnergySchedule(network).solve(network.base_load_mw)
    assert np.ptp(net.res_bus["lam_p"]) > 1.0  # congested: prices separate
    _assert_matches_rundcopp(net, network, result, price_atol=1e-3)


def test_load_case_simbench_prefix():
    with pytest.raises(ValueError, match="nope"):
        load_case("simbench:nope")


@pytest.mark.slow
def test_ehv_balancing_built_once_matches_fresh(ehv_net):
    rng = np.random.default_rng(11)
    network = from_pandapower(copy.deepcopy(ehv_net), name=EHV)
    schedule = EnergySchedule(network)
    market = BalancingMarket(network, VOLL)
    load_buses = network.bus_ids[network.base_load_mw > 0]
    for period in range(4):
        sched = schedule.solve(network.base_load_mw * rng.uniform(0.8, 1.0))
        assert sched.ok, sched.message
        ter = ter_offers(network, sched, 0.02 * network.generators["p_max_mw"].to_numpy())
        der = _offers(
            [
                (
                    1000 * period + k,
                    int(rng.choice(load_buses)),
                    str(rng.choice(["up", "down"])),
                    float(rng.uniform(1.0, 30.0)),
                    float(rng.uniform(-40.0, 120.0)),
                )
                for k in range(30)
            ]
        )
        offers = pd.concat([ter.drop(columns="element"), der], ignore_index=True)
        need = rng.normal(0.0, 0.01) * np.clip(network.base_load_mw, 0.0, None)
        kept = market.clear(offers, need, sched.flow_mw)
        fresh = BalancingMarket(network, VOLL).clear(offers, need, sched.flow_mw)
        assert kept.ok and fresh.ok
        assert kept.cost_eur == pytest.approx(fresh.cost_eur, rel=1e-9, abs=1e-6)
        np.testing.assert_allclose(kept.price_eur_per_mwh, fresh.price_eur_per_mwh, atol=1e-6)


@pytest.mark.parametrize("layout", [np.asarray, sparse.csr_array, sparse.csr_matrix])
def test_offer_rows_constrain_one_period_and_leave_the_model_as_built(layout):
    """The TSO-managed model adds linearised DSO constraints on offers for one period; the
    rows may be dense or scipy.sparse (never densified)."""
    market = BalancingMarket(_triangle(), VOLL)
    offers = _offers([(1, 0, "up", 50.0, 10.0), (2, 0, "up", 50.0, 20.0), (3, 2, "up", 50, 30.0)])
    need = np.array([0.0, 80.0, 0.0])
    plain = market.clear(offers, need).accepted.set_index("offer_id").mw
    assert plain[1] == pytest.approx(50.0) and plain[2] == pytest.approx(30.0)
    # a distribution constraint: offers 1 and 2 sit behind one feeder that takes 40 MW at most
    rows = (layout(np.array([[1.0, 1.0, 0.0]])), np.array([40.0]))
    limited = market.clear(offers, need, offer_rows=rows)
    mw = limited.accepted.set_index("offer_id").mw
    assert mw.get(1, 0.0) + mw.get(2, 0.0) == pytest.approx(40.0)
    assert mw[3] == pytest.approx(40.0)  # the rest comes from the dearer, unconstrained offer
    assert limited.n_constraints == market.n_constraints + 1
    pd.testing.assert_frame_equal(limited.offers, offers)  # the book as cleared
    again = market.clear(offers, need).accepted.set_index("offer_id").mw
    pd.testing.assert_series_equal(again, plain)


def test_binding_offer_rows_leave_a_basis_to_start_from():
    """Deleting a binding row (its slack nonbasic) made HiGHS drop its basis, so the next
    period's balancing solve started from scratch; the statuses it keeps are given back as an
    alien basis, and the next clearing starts from it and ends where a fresh market ends."""
    market = BalancingMarket(_triangle(), VOLL)
    offers = _offers([(1, 0, "up", 50.0, 10.0), (2, 0, "up", 50.0, 20.0), (3, 2, "up", 50, 30.0)])
    need = np.array([0.0, 80.0, 0.0])
    rows = (np.array([[1.0, 1.0, 0.0]]), np.array([40.0]))  # binds: 1 and 2 could give 80
    assert market.clear(offers, need, offer_rows=rows).ok
    assert market._lp.highs.getBasis().valid
    again = market.clear(offers, need)
    fresh = BalancingMarket(_triangle(), VOLL).clear(offers, need)
    pd.testing.assert_frame_equal(again.accepted, fresh.accepted)
    np.testing.assert_array_equal(again.price_eur_per_mwh, fresh.price_eur_per_mwh)
