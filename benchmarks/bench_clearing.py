"""Per-period clearing time on case118 and the SimBench EHV grid, four ways, in one run.

For each network, ``--periods`` (default 96) periods of a day: the load follows a daily shape
with noise, the balancing need is an AR(1) share of each bus's load, and the offers are the
TER offers around the period's schedule (ramp 2 % of p_max) plus 40 random DER offers at load
buses. Then, on the same inputs:

* energy schedule (DC OPF of the generators): our model built once and updated, a pyomo model
  rebuilt every period, ``pandapower.rundcopp`` and a direct ``highspy`` model of the same
  problem (built once, right-hand sides written per period);
* balancing market (LP over deviations): built once and updated, rebuilt every period, and a
  direct ``highspy`` model of the same LP (same offer slots).

Prints medians in ms per period and ratios; ``--rebuilt-every k`` times the slow baselines on
every k-th period only (their medians are still per period).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import highspy
import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pandas as pd
from scipy import sparse

from market_sim import kernels
from market_sim.markets.balancing import TIE_BREAK_EUR_PER_MWH, BalancingMarket, OfferBook
from market_sim.markets.offers import ter_offers
from market_sim.markets.pips_fallback import pips_problem
from market_sim.markets.schedule import EnergySchedule
from market_sim.markets.transmission import from_pandapower, simbench_opf_net
from market_sim.types import DOWN, UP

try:
    from benchmarks.timing import median_ms
except ImportError:  # run as a script from benchmarks/
    from timing import median_ms

VOLL = 3000.0
EHV = "1-EHV-mixed--0-sw"


def _direct_highs(cost, hess_diag, a: sparse.csr_matrix, xlo, xhi, rlo, rhi) -> highspy.Highs:
    """A highspy model of min c'x + x'Hx/2, rlo <= Ax <= rhi, xlo <= x <= xhi."""
    h = kernels.one_thread_highs(qp_regularization_value=1e-12)  # as the engine's
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, xlo, xhi
    lp.row_lower_, lp.row_upper_ = rlo, rhi
    csc = a.tocsc()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = (
        csc.indptr,
        csc.indices,
        csc.data,
    )
    h.passModel(lp)
    if np.any(hess_diag != 0):
        nz = np.flatnonzero(hess_diag)
        start = np.searchsorted(nz, np.arange(a.shape[1] + 1)).astype(np.int32)
        h.passHessian(a.shape[1], len(nz), 1, start, nz.astype(np.int32), hess_diag[nz])
    return h


def direct_schedule(schedule: EnergySchedule):
    """Direct highspy model of the schedule (the PIPS matrices); returns solve(load)."""
    net = schedule.network
    prob = pips_problem(net)
    n_l = net.n_branches
    shift = net.branches["shift_mw"].to_numpy()
    h = _direct_highs(
        prob["c"],
        prob["H"].diagonal(),
        prob["A"],
        prob["xmin"],
        prob["xmax"],
        np.r_[shift, net.base_load_mw],
        np.r_[shift, net.base_load_mw],
    )
    rows = np.arange(n_l, n_l + net.n_buses, dtype=np.int32)

    def solve(load: np.ndarray) -> float:
        rhs = load + net.shunt_mw
        h.changeRowsBounds(len(rows), rows, rhs, rhs)
        h.run()
        assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        return h.getInfo().objective_function_value

    return solve


def direct_balancing(market: BalancingMarket):
    """Direct highspy model of the balancing LP with the market's slots; returns clear(...).

    x = [theta (B, ref fixed at 0), flow (L), q (slots), unserved_up (B), unserved_down (B)].
    """
    net = market.network
    n_b, n_l, n_s = net.n_buses, net.n_branches, len(market._slot_bus)
    br = net.branches
    f_pos, t_pos, b = br["from_pos"].to_numpy(), br["to_pos"].to_numpy(), br["b_pu"].to_numpy()
    lines = np.arange(n_l)
    flow_def = sparse.hstack(
        [
            sparse.csr_matrix(
                (np.r_[-b, b], (np.r_[lines, lines], np.r_[f_pos, t_pos])), (n_l, n_b)
            ),
            sparse.identity(n_l),
            sparse.csr_matrix((n_l, n_s + 2 * n_b)),
        ]
    )
    cft = sparse.csr_matrix(
        (np.r_[np.ones(n_l), -np.ones(n_l)], (np.r_[f_pos, t_pos], np.r_[lines, lines])),
        (n_b, n_l),
    )
    slots = sparse.csr_matrix((market._slot_sign, (market._slot_bus, np.arange(n_s))), (n_b, n_s))
    eye = sparse.identity(n_b)
    balance = sparse.hstack([sparse.csr_matrix((n_b, n_b)), -cft, slots, eye, -eye])
    rated = market._rated
    limit = sparse.csr_matrix((np.ones(len(rated)), (np.arange(len(rated)), n_b + rated)))
    limit.resize(len(rated), n_b + n_l + n_s + 2 * n_b)
    a = sparse.vstack([flow_def, balance, limit], format="csr")
    theta_lo = np.full(n_b, -np.inf)
    theta_lo[net.ref_pos] = 0.0
    theta_hi = np.where(np.isinf(theta_lo), np.inf, theta_lo)
    cost = np.r_[np.zeros(n_b + n_l), np.full(n_s, TIE_BREAK_EUR_PER_MWH), np.full(2 * n_b, VOLL)]
    xlo = np.r_[theta_lo, np.full(n_l, -np.inf), np.zeros(n_s + 2 * n_b)]
    xhi = np.r_[theta_hi, np.full(n_l, np.inf), np.zeros(n_s), np.full(2 * n_b, np.inf)]
    rating = market._rating[rated]
    rlo = np.r_[np.zeros(n_l + n_b), -rating]
    rhi = np.r_[np.zeros(n_l + n_b), rating]
    h = _direct_highs(cost, np.zeros(len(cost)), a, xlo, xhi, rlo, rhi)
    q_cols = np.arange(n_b + n_l, n_b + n_l + n_s, dtype=np.int32)
    bal_rows = np.arange(n_l, n_l + n_b, dtype=np.int32)
    lim_rows = np.arange(n_l + n_b, n_l + n_b + len(rated), dtype=np.int32)

    def clear(offers: pd.DataFrame, need: np.ndarray, base_flow: np.ndarray) -> float:
        slot = _slots(market, offers)
        mw = np.zeros(n_s)
        mw[slot] = offers["mw"].to_numpy()
        h.changeColsBounds(n_s, q_cols, np.zeros(n_s), mw)
        price = offers["price_eur_per_mwh"].to_numpy() + TIE_BREAK_EUR_PER_MWH
        h.changeColsCost(len(slot), q_cols[slot].astype(np.int32), price)
        h.changeRowsBounds(n_b, bal_rows, need, need)
        base = base_flow[rated]
        lim = np.maximum(rating, np.abs(base))
        h.changeRowsBounds(len(rated), lim_rows, -lim - base, lim - base)
        h.run()
        assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        return h.getInfo().objective_function_value

    return clear


def _slots(market: BalancingMarket, offers: pd.DataFrame) -> np.ndarray:
    """The slot of every offer in ``market``'s LP (grown where a bus overflows)."""
    book = OfferBook.of(offers)
    return market._slots_for(book, market.network.bus_position(book.bus))


def _inputs(network, schedule: EnergySchedule, periods: int, rng: np.random.Generator):
    """Loads, offers, needs and base flows of ``periods`` periods of one day."""
    hours = np.arange(periods) * 24.0 / periods
    shape = 0.85 + 0.12 * np.sin((hours - 9.0) / 24.0 * 2 * np.pi)
    factors = shape * (1 + rng.normal(0.0, 0.01, periods))
    load_buses = np.flatnonzero(network.base_load_mw > 0)
    ramp = 0.02 * network.generators["p_max_mw"].to_numpy()
    error, periods_in = 0.0, []
    for t, f in enumerate(factors):
        load = network.base_load_mw * f
        sched = schedule.solve(load)
        assert sched.ok, sched.message
        error = 0.9 * error + np.sqrt(1 - 0.81) * 0.01 * rng.normal()
        need = error * np.clip(load, 0.0, None)
        der = pd.DataFrame(
            {
                "offer_id": np.arange(40, dtype=np.int64) + 1000 * t,
                "bus": network.bus_ids[rng.choice(load_buses, 40)],
                "direction": pd.Series(rng.choice([UP, DOWN], 40), dtype="string"),
                "mw": rng.uniform(1.0, 30.0, 40),
                "price_eur_per_mwh": rng.uniform(-40.0, 120.0, 40),
            }
        )
        ter = ter_offers(network, sched, ramp).drop(columns="element")
        offers = pd.concat([ter, der], ignore_index=True)
        periods_in.append((f, load, offers, need, sched.flow_mw.copy()))
    return periods_in


def bench(name: str, net, periods: int, every: int, rng: np.random.Generator) -> dict:
    network = from_pandapower(net, name=name)
    schedule = EnergySchedule(network)
    inputs = _inputs(network, schedule, periods, rng)
    slow_inputs = inputs[::every]

    def pp_dcopp(x):
        net.load["scaling"] = x[0]
        net.sgen["scaling"] = x[0]
        pp.rundcopp(net)

    sched_direct = direct_schedule(schedule)
    row = {
        "schedule persistent": median_ms(lambda x: schedule.solve(x[1]), inputs),
        "schedule rebuilt": median_ms(lambda x: EnergySchedule(network).solve(x[1]), slow_inputs),
        "schedule rundcopp": median_ms(pp_dcopp, slow_inputs),
        "schedule highspy": median_ms(lambda x: sched_direct(x[1]), inputs),
    }
    market = BalancingMarket(network, VOLL)
    for x in inputs:  # grow the slots once, so that no timed period rebuilds
        _slots(market, x[2])
    bal_direct = direct_balancing(market)
    row["balancing persistent"] = median_ms(lambda x: market.clear(*x[2:]), inputs)
    row["balancing rebuilt"] = median_ms(
        lambda x: BalancingMarket(network, VOLL).clear(*x[2:]), slow_inputs
    )
    row["balancing highspy"] = median_ms(lambda x: bal_direct(*x[2:]), inputs)
    # Same answers: objective of the persistent model against the direct one, last period.
    last = inputs[-1]
    ours = market.clear(*last[2:])
    voll_part = VOLL * (ours.unserved_up_mw + ours.unserved_down_mw)
    tie = TIE_BREAK_EUR_PER_MWH * ours.accepted["mw"].sum()
    assert abs(ours.cost_eur + tie - bal_direct(*last[2:])) < 1e-3 * (1 + abs(voll_part)), name
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--periods", type=int, default=96)
    parser.add_argument("--rebuilt-every", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.ERROR)
    rng = np.random.default_rng(2016)
    rows = {}
    for name, factory in (
        ("case118", pn.case118),
        (f"SimBench {EHV}", lambda: simbench_opf_net(EHV)),
    ):
        t0 = time.perf_counter()
        rows[name] = bench(name, factory(), args.periods, args.rebuilt_every, rng)
        print(f"{name}: benchmarked in {time.perf_counter() - t0:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    print("\nmedian ms per period:")
    print(table.round(2).to_string())
    for name, r in rows.items():
        ratios = {
            "schedule rebuilt/persistent": r["schedule rebuilt"] / r["schedule persistent"],
            "schedule rundcopp/persistent": r["schedule rundcopp"] / r["schedule persistent"],
            "schedule persistent/highspy": r["schedule persistent"] / r["schedule highspy"],
            "balancing rebuilt/persistent": r["balancing rebuilt"] / r["balancing persistent"],
            "balancing persistent/highspy": r["balancing persistent"] / r["balancing highspy"],
        }
        print(f"{name}: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
