"""The TSO's balancing LP of a period rebuilt from a run's parquet tables alone.

What a period's clearing was built from (the whole offer book, the need and load per bus, the
schedule's flows and the flow limits, the reserve rows and tso_managed's linearised
distribution rows) is in the run folder; a researcher solves the same LP with scipy's HiGHS
and gets the run's objective. Nothing of the simulation's own solver code is used here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.optimize import linprog

from market_sim import load_results
from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.grid.state import injections_from_table
from market_sim.results import write_run
from market_sim.types import Limits

#: Four midday periods: PV pushes voltages up, so tso_managed's distribution rows bind.
PERIODS = range(46, 50)
MODELS = ("tso_managed", "hybrid", "dso_managed")
DISTRIBUTION_KINDS = ["vmax", "vmin", "line", "trafo"]


@pytest.fixture(scope="module", params=MODELS)
def run_tables(request, make_model, tmp_path_factory) -> tuple[str, dict[str, pd.DataFrame]]:
    """The parquet tables of four midday periods of the quickstart under one model."""
    sim = make_model(request.param)
    sim.period = PERIODS[0]
    sim.run(len(PERIODS))
    folder = tmp_path_factory.mktemp(request.param)
    write_run(folder, "", {"model": request.param}, sim.tables())
    return request.param, load_results(folder)


def of_period(table: pd.DataFrame, period: int) -> pd.DataFrame:
    return table[table.period == period].reset_index(drop=True)


def rebuilt_cost(tables: dict[str, pd.DataFrame], period: int) -> float:
    """Solve the balancing LP of ``period`` from the tables; its cost in EUR/h (tie-break out).

    Variables: accepted MW per offer in [0, mw], unserved up and down per bus (VOLL), a DC
    deviation flow and an angle per branch and bus. Rows: nodal balance = need, branch flow
    = b (angle difference), base flow + deviation within the limit, and ``A q <= b``.
    """
    lp = of_period(tables["balancing_lp"], period).iloc[0]
    offers = of_period(tables["balancing_offers"], period)
    buses = of_period(tables["balancing_buses"], period)
    branches = of_period(tables["balancing_branches"], period)
    rows = of_period(tables["balancing_rows"], period)
    coefficients = of_period(tables["balancing_coefficients"], period)
    n_q, n_b, n_l = len(offers), len(buses), len(branches)
    bus_pos = pd.Series(np.arange(n_b), index=buses.bus.to_numpy())
    # columns: q | unserved_up | unserved_down | theta | flow
    n = n_q + 3 * n_b + n_l
    th, fl = n_q + 2 * n_b, n_q + 3 * n_b
    sign = np.where(offers.direction == "up", 1.0, -1.0)
    at = bus_pos[offers.bus].to_numpy()
    f, t = bus_pos[branches.from_bus].to_numpy(), bus_pos[branches.to_bus].to_numpy()
    lines = np.arange(n_l)
    balance = sparse.coo_array(
        (
            np.r_[sign, np.ones(n_b), -np.ones(n_b), -np.ones(n_l), np.ones(n_l)],
            (
                np.r_[at, np.arange(n_b), np.arange(n_b), f, t],
                np.r_[np.arange(n_q), n_q + np.arange(n_b), n_q + n_b + np.arange(n_b)].tolist()
                + (fl + lines).tolist()
                + (fl + lines).tolist(),
            ),
        ),
        shape=(n_b, n),
    )
    b_pu = branches.b_pu.to_numpy()
    flow_def = sparse.coo_array(
        (
            np.r_[np.ones(n_l), -b_pu, b_pu],
            (np.r_[lines, lines, lines], np.r_[fl + lines, th + f, th + t]),
        ),
        shape=(n_l, n),
    )
    a_eq = sparse.vstack([balance, flow_def])
    b_eq = np.r_[buses.need_mw.to_numpy(), np.zeros(n_l)]
    offer_pos = pd.Series(np.arange(n_q), index=offers.offer_id.to_numpy())
    rows = rows.sort_values("row")
    row_pos = pd.Series(np.arange(len(rows)), index=rows.row.to_numpy())
    a_ub = sparse.coo_array(
        (
            coefficients.coefficient.to_numpy(),
            (row_pos[coefficients.row].to_numpy(), offer_pos[coefficients.offer_id].to_numpy()),
        ),
        shape=(len(rows), n),
    )
    b_ub = rows.rhs.to_numpy()
    base, limit = branches.base_flow_mw.to_numpy(), branches.limit_mw.to_numpy()
    bounds = (
        [(0.0, mw) for mw in offers.mw]
        + [(0.0, None)] * (2 * n_b)
        + [(0.0, 0.0)]
        + [(None, None)] * (n_b - 1)
        + [
            (None, None) if not np.isfinite(lim) else (-lim - b0, lim - b0)
            for b0, lim in zip(base, limit, strict=True)
        ]
    )
    price = offers.price_eur_per_mwh.to_numpy()
    cost = np.r_[
        price + lp.tie_break_eur_per_mwh, np.full(2 * n_b, lp.voll_eur_per_mwh), np.zeros(n_b + n_l)
    ]
    solved = linprog(
        cost,
        A_ub=a_ub.tocsr() if len(rows) else None,
        b_ub=b_ub if len(rows) else None,
        A_eq=a_eq.tocsr(),
        b_eq=b_eq,
        bounds=bounds,
        method="highs",
    )
    assert solved.status == 0, solved.message
    x = solved.x
    return float(price @ x[:n_q] + lp.voll_eur_per_mwh * x[n_q : n_q + 2 * n_b].sum())


def test_the_balancing_lp_of_every_period_is_rebuilt_from_the_tables(run_tables):
    model, tables = run_tables
    lp = tables["balancing_lp"]
    assert lp.period.tolist() == list(PERIODS) and lp.ok.all()
    for period, run_cost in zip(lp.period, lp.cost_eur_per_h, strict=True):
        assert rebuilt_cost(tables, period) == pytest.approx(run_cost, rel=1e-6, abs=1e-6)


def test_tso_managed_distribution_rows_bind(run_tables):
    """Without its linearised rows tso_managed's LP is a different one: it costs less."""
    model, tables = run_tables
    if model != "tso_managed":
        pytest.skip("only tso_managed carries distribution rows")
    rows = tables["balancing_rows"]
    reserve = rows[~rows.kind.isin(DISTRIBUTION_KINDS)]
    coefficients = tables["balancing_coefficients"].merge(reserve[["period", "row"]])
    without = tables | {"balancing_rows": reserve, "balancing_coefficients": coefficients}
    lp = tables["balancing_lp"]
    cost = lp.set_index("period").cost_eur_per_h
    assert any(rebuilt_cost(without, p) < cost[p] - 1e-3 for p in PERIODS)


def test_the_book_holds_every_offer_not_only_the_accepted_ones(run_tables):
    model, tables = run_tables
    offers = tables["balancing_offers"]
    ter = offers[offers.resource == "ter"]
    accepted = tables["dispatch"]
    assert len(ter) > (accepted.resource == "ter").sum()
    assert set(accepted.id[accepted.resource == "ter"]) <= set(ter.offer_id)
    assert (ter.element.str.len() > 0).all() and (ter.offer_id < 0).all()


def test_tso_managed_carries_its_linearised_rows(run_tables):
    model, tables = run_tables
    rows = tables["balancing_rows"]
    distribution = rows[rows.kind.isin(DISTRIBUTION_KINDS)]
    runs = tables["clearing_runs"].groupby("period").distribution_constraints.last()
    per_period = distribution.groupby("period").size().reindex(runs.index, fill_value=0)
    assert per_period.tolist() == runs.tolist()
    if model == "tso_managed":
        assert len(distribution) > 0 and set(distribution.dso) <= {"rural", "semiurb"}
        coefficients = tables["balancing_coefficients"].merge(rows, on=["period", "row"])
        bids = tables["bids"]
        der = coefficients[coefficients.kind.isin(DISTRIBUTION_KINDS)]
        assert set(der.offer_id) <= set(bids.bid_id)


def test_schedule_dispatch_balances_the_bus_loads(run_tables):
    """The schedule's generator outputs and the bus loads are stored: a lossless DC schedule
    generates what is consumed."""
    _, tables = run_tables
    gen = tables["schedule_dispatch"].groupby("period").p_mw.sum()
    load = tables["balancing_buses"].groupby("period").load_mw.sum()
    np.testing.assert_allclose(gen.to_numpy(), load.to_numpy(), rtol=1e-6)


def test_baseline_is_the_forecast_each_dso_validated_from(run_tables, make_model):
    """The baseline table holds every DSO's forecast set-points of every period: the profiles'
    forecast plus what the prosumers repay of their energy debts at the period's start."""
    model, tables = run_tables
    sim = make_model(model)
    sim.period = PERIODS[0]
    baseline = tables["baseline"]
    for period in PERIODS:
        expected = sim.population.with_recovery(sim.forecasts(period), sim.state.energy)
        for name, forecast in expected.items():
            rows = baseline[(baseline.period == period) & (baseline.dso == name)]
            loads = rows[rows.element == "load"]
            np.testing.assert_array_equal(loads.p_mw.to_numpy(), forecast.p_mw["load"])
        sim.step()


def test_operational_data_is_the_network_state(run_tables, networks):
    """Step 1b carries the state, not only set-points: every bus's voltage, every line's flow
    and loading, the interface injection; its voltages are those of a power flow of its
    set-points, and the TSO received what the tables hold."""
    model, tables = run_tables
    state = tables["operational_data"]
    if model != "tso_managed":
        assert state.empty
        return
    messages = tables["messages"]
    sent = messages[messages.kind == "operational_data"]
    assert (
        sent.groupby(["period", "sender"]).items.sum() == state.groupby(["period", "dso"]).size()
    ).all()
    buses = state[state.element == "bus"]
    assert buses.vm_pu.between(0.9, 1.1).all() and buses.va_degree.notna().all()
    lines = state[state.element == "line"]
    assert (lines.loading_percent > 0).any() and lines.p_mw.notna().all()
    interface = state[state.element == "ext_grid"].set_index(["period", "dso"]).p_mw
    assert interface.notna().all() and len(interface) == 2 * len(PERIODS)
    # the state is that of a power flow of the reported (forecast) set-points
    for (period, dso), reported in state.groupby(["period", "dso"], observed=True):
        point = injections_from_table(networks[dso], reported)
        flow = run_power_flow_detailed(networks[dso], point, Limits(), write=False)
        np.testing.assert_allclose(interface[(period, dso)], flow.flows.ext_p_mw, atol=1e-6)


def test_reserve_rows_are_rebuilt_too(make_model, quickstart, tmp_path):
    """With a reserve the book carries one row per direction; the LP is still rebuilt."""
    reserve = quickstart.transmission.model_copy(
        update={"reserve_up_mw": 20.0, "reserve_down_mw": 10.0}
    )
    sim = make_model("hybrid", transmission=reserve)
    sim.period = PERIODS[0]
    sim.run(1)
    write_run(tmp_path, "", {}, sim.tables())
    tables = load_results(tmp_path)
    rows = tables["balancing_rows"]
    assert rows.kind.tolist() == ["reserve_up", "reserve_down"]
    offers = tables["balancing_offers"]
    up = tables["balancing_coefficients"].merge(rows[rows.kind == "reserve_up"], on="row")
    assert set(up.offer_id) == set(offers.offer_id[offers.direction == "up"])
    assert rows.rhs[0] == pytest.approx(offers.mw[offers.direction == "up"].sum() - 20.0)
    cost = tables["balancing_lp"].cost_eur_per_h[0]
    assert rebuilt_cost(tables, PERIODS[0]) == pytest.approx(cost, rel=1e-6, abs=1e-6)


def test_unrecorded_coefficients_leave_that_table_empty_and_every_other_as_it_was(
    run_tables, make_model, quickstart
):
    """``record.balancing_coefficients: false`` (a large grid's audit table) changes what is
    written, not what is computed: the same periods give the same tables but that one."""
    model, tables = run_tables
    if model != "tso_managed":
        pytest.skip("the table is large where tso_managed's distribution rows are")
    record = quickstart.record.model_copy(update={"balancing_coefficients": False})
    sim = make_model(model, record=record)
    sim.period = PERIODS[0]
    sim.run(len(PERIODS))
    without = sim.tables()
    assert len(tables["balancing_coefficients"]) > 0
    assert without["balancing_coefficients"].empty
    assert list(without["balancing_coefficients"]) == list(tables["balancing_coefficients"])
    for name in set(tables) - {"balancing_coefficients", "timings"}:
        pd.testing.assert_frame_equal(
            without[name].reset_index(drop=True), tables[name].reset_index(drop=True),
            check_dtype=False, obj=name,
        )  # fmt: skip
