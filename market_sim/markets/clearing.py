"""Transmission-level market clearing: the energy schedule and the balancing market.

Both are DC optimal power flows in B-theta form, declared once per run as pyomo models and
loaded once into HiGHS (:class:`~market_sim.markets.persistent.LoadedModel`). A period writes
only the numbers that changed (row bounds for loads and needs, column bounds and costs for
offers, row bounds for flow limits) straight into the HiGHS instance as arrays and re-solves
from the previous basis; pyomo's own persistent parameter updates re-evaluated every mutable
expression one by one and cost more than the solve itself. HiGHS's QP solver occasionally
ends with a "solve error" on a feasible schedule; the schedule then falls back to PIPS, the
interior-point QP solver pandapower's rundcopp uses.

Units and signs (see :mod:`market_sim.types`): MW with injection positive, EUR/MWh paid by the
buyer, objectives in EUR/h (the caller multiplies by the period length in hours). Nodal prices
are duals of the nodal balance, i.e. the change of the objective in EUR/h per MW of extra
demand (schedule) or extra need for injection (balancing); they are positive when more demand
costs more.

A failed or infeasible solve never raises: the result has ``ok=False`` and a message, so the
engine can record an event and go on. Invalid inputs (wrong shape, unknown bus, bad direction,
non-finite numbers) raise ValueError, because they are programming errors, not market outcomes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from market_sim.markets.persistent import LoadedModel
from market_sim.markets.transmission import TransmissionNetwork
from market_sim.types import DOWN, UP

logger = logging.getLogger(__name__)

OFFER_COLUMNS = ("offer_id", "bus", "direction", "mw", "price_eur_per_mwh")

#: Accepted quantities below this (MW) are solver noise and reported as not accepted.
MW_TOL = 1e-7

#: HiGHS QP Hessian regularisation; small enough to reproduce pandapower's rundcopp to 1e-6 MW.
QP_REGULARIZATION = 1e-12

#: Cost added to every accepted MW of a balancing offer (EUR/MWh). TER offers come in up/down
#: pairs at +mc/-mc, so without it accepting both halves of a pair ("wash trade") costs exactly
#: nothing and the solver may report activations that cancel out. It shifts nodal prices by at
#: most this much and is not part of the reported cost.
TIE_BREAK_EUR_PER_MWH = 1e-6


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class ScheduleResult:
    """Outcome of the energy schedule (a DC OPF) for one period.

    ``gen_mw``: injection per generator (index: element name, e.g. "gen 3"); ``flow_mw``: flow
    per branch from its from-bus to its to-bus, aligned with ``network.branches``;
    ``cost_eur_per_h``: total generation cost incl. constant terms (as pandapower's res_cost);
    ``price_eur_per_mwh``: nodal price (LMP) per bus aligned with ``network.bus_ids``. When
    ``ok`` is False the numeric fields are NaN.
    """

    ok: bool
    message: str
    gen_mw: pd.Series
    flow_mw: np.ndarray
    cost_eur_per_h: float
    price_eur_per_mwh: np.ndarray
    solve_time_s: float


@dataclass(frozen=True)
class BalancingResult:
    """Outcome of the balancing market for one period.

    ``accepted``: one row per offer with accepted MW > 0: offer_id, bus, direction, mw
    (accepted, >= 0), price_eur_per_mwh (the offer's own price). ``price_eur_per_mwh``: nodal
    price of injection per bus (dual of the nodal balance: EUR/h per MW of extra need for
    injection). Pay-as-cleared settlement at that price means an up offer earns ``+price`` and a
    down offer earns ``-price`` per MWh, so the marginal offer of either direction clears at its
    own price. ``unserved_*_mw``: need that no offer covered, priced at VOLL. ``cost_eur``:
    objective in EUR per hour of the period, sum(price * MW) + VOLL * unserved; multiply by the
    period length in hours. ``relaxed_branches``: branches whose base flow already exceeded
    their rating, so their limit was relaxed to the base-flow magnitude.
    """

    ok: bool
    message: str
    accepted: pd.DataFrame
    price_eur_per_mwh: np.ndarray
    unserved_up_mw: float
    unserved_down_mw: float
    cost_eur: float
    solve_time_s: float
    n_variables: int
    n_constraints: int
    relaxed_branches: tuple[str, ...] = field(default=())


def _empty_accepted() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "offer_id": pd.Series(dtype="int64"),
            "bus": pd.Series(dtype="int64"),
            "direction": pd.Series(dtype="string"),
            "mw": pd.Series(dtype="float64"),
            "price_eur_per_mwh": pd.Series(dtype="float64"),
        }
    )


# --------------------------------------------------------------------------------------------
# shared model pieces


#: HiGHS options of every clearing model. HiGHS's QP solver regularises the Hessian by 1e-7 by
#: default, which on MW-scaled costs shifts a dispatch by ~1e-2 MW and makes LMPs of an
#: uncongested network differ by ~1e-4 from pandapower's rundcopp.
HIGHS_OPTIONS: dict[str, object] = {"qp_regularization_value": QP_REGULARIZATION}


def _incidence(network: TransmissionNetwork) -> tuple[list[list[int]], list[list[int]]]:
    """Branches leaving and entering each bus position."""
    out_br: list[list[int]] = [[] for _ in range(network.n_buses)]
    in_br: list[list[int]] = [[] for _ in range(network.n_buses)]
    br = network.branches
    for k, (f, t) in enumerate(zip(br["from_pos"], br["to_pos"], strict=True)):
        out_br[int(f)].append(k)
        in_br[int(t)].append(k)
    return out_br, in_br


def _define_dc_network(
    m: pyo.ConcreteModel, network: TransmissionNetwork, with_shift: bool
) -> tuple[list[list[int]], list[list[int]]]:
    """Buses, branches, angles and the DC flow definition of each branch.

    The angle variable is ``theta_mw = base_mva * theta_rad`` so that flow coefficients are the
    per-unit susceptances (1..1e3) rather than MW-per-rad values up to 1e5: HiGHS's QP solver
    otherwise ends some solves with small primal infeasibilities and reports a solve error.
    ``with_shift`` adds the phase shifters' constant flow offset; a model over deviations
    leaves it out because the offset is already in the base flow.
    """
    br = network.branches
    m.B = pyo.RangeSet(0, network.n_buses - 1)
    m.L = pyo.RangeSet(0, network.n_branches - 1)
    m.theta_mw = pyo.Var(m.B, initialize=0.0)
    for pos, ang in zip(network.ref_pos, network.ref_angle_rad, strict=True):
        m.theta_mw[int(pos)].fix(network.base_mva * float(ang) if with_shift else 0.0)
    m.flow = pyo.Var(m.L, initialize=0.0)
    coef = br["b_pu"].to_numpy()
    shift = br["shift_mw"].to_numpy() if with_shift else np.zeros(network.n_branches)
    f_pos, t_pos = br["from_pos"].to_numpy(), br["to_pos"].to_numpy()

    def flow_rule(m, k):
        angle_diff = m.theta_mw[int(f_pos[k])] - m.theta_mw[int(t_pos[k])]
        return m.flow[k] == float(coef[k]) * angle_diff + float(shift[k])

    m.flow_def = pyo.Constraint(m.L, rule=flow_rule)
    return _incidence(network)


def _net_outflow(m: pyo.ConcreteModel, out_br: list[int], in_br: list[int]):
    return sum(m.flow[k] for k in out_br) - sum(m.flow[k] for k in in_br)


def _run(lp: LoadedModel) -> str | None:
    """Solve; ``None`` if optimal, else why not. Never raises (a seam for tests, too)."""
    return lp.run()


def _count(m: pyo.ConcreteModel) -> tuple[int, int]:
    n_var = sum(1 for v in m.component_data_objects(pyo.Var) if not v.fixed)
    n_con = sum(1 for _ in m.component_data_objects(pyo.Constraint, active=True))
    return n_var, n_con


# --------------------------------------------------------------------------------------------
# energy schedule


class EnergySchedule:
    """Day-ahead style energy schedule: DC OPF with quadratic generator costs and line limits.

    Built and loaded into HiGHS once per run; ``solve`` only writes the bus loads into the
    right-hand sides of the nodal balance rows. The nodal balance is ``gen - net outflow = load
    + shunt`` per bus, so its dual is the LMP (EUR/MWh), positive when more load costs more.
    ``self.model`` declares the problem with the network's base loads; HiGHS holds the last
    period's loads.
    """

    def __init__(self, network: TransmissionNetwork):
        self.network = network
        self.model = self._build()
        self.n_variables, self.n_constraints = _count(self.model)
        m = self.model
        self._lp = LoadedModel(m, HIGHS_OPTIONS)
        self._p_cols = self._lp.cols(m.p[g] for g in m.G)
        self._flow_cols = self._lp.cols(m.flow[k] for k in m.L)
        self._balance_rows = self._lp.rows(m.balance[n] for n in m.B)
        self._pips: dict | None = None

    def forget_warm_start(self) -> None:
        """Solve the next period from scratch, as a freshly built schedule would."""
        self._lp.forget_basis()

    def _build(self) -> pyo.ConcreteModel:
        m = pyo.ConcreteModel(name=f"schedule {self.network.name}")
        out_br, in_br = _define_dc_network(m, self.network, with_shift=True)
        self._define_generators(m)
        self._define_flow_limits(m)
        self._define_balance(m, out_br, in_br)
        self._define_objective(m)
        return m

    def _define_generators(self, m: pyo.ConcreteModel) -> None:
        gen = self.network.generators
        m.G = pyo.RangeSet(0, len(gen) - 1)
        lo, hi = gen["p_min_mw"].to_numpy(), gen["p_max_mw"].to_numpy()
        m.p = pyo.Var(m.G, bounds=lambda m, g: (float(lo[g]), float(hi[g])))

    def _define_flow_limits(self, m: pyo.ConcreteModel) -> None:
        rating = self.network.branches["rating_mw"].to_numpy()
        m.L_lim = pyo.Set(initialize=np.flatnonzero(np.isfinite(rating)).tolist())
        m.flow_limit = pyo.Constraint(
            m.L_lim, rule=lambda m, k: (-float(rating[k]), m.flow[k], float(rating[k]))
        )

    def _define_balance(self, m: pyo.ConcreteModel, out_br, in_br) -> None:
        net = self.network
        gens_at: list[list[int]] = [[] for _ in range(net.n_buses)]
        for g, pos in enumerate(net.generators["bus_pos"]):
            gens_at[int(pos)].append(g)
        demand = net.base_load_mw + net.shunt_mw  # placeholder; solve() writes the period's

        def balance_rule(m, n):
            injection = sum(m.p[g] for g in gens_at[n]) - _net_outflow(m, out_br[n], in_br[n])
            return injection == float(demand[n])

        m.balance = pyo.Constraint(m.B, rule=balance_rule)

    def _define_objective(self, m: pyo.ConcreteModel) -> None:
        gen = self.network.generators
        c0, c1, c2 = (
            gen[c].to_numpy() for c in ("c0_eur_per_h", "c1_eur_per_mwh", "c2_eur_per_mw2h")
        )
        m.cost = pyo.Objective(
            expr=sum(float(c2[g]) * m.p[g] ** 2 for g in m.G if c2[g] != 0.0)
            + sum(float(c1[g]) * m.p[g] for g in m.G)
            + float(c0.sum()),
            sense=pyo.minimize,
        )

    def solve(self, load_mw: np.ndarray) -> ScheduleResult:
        """Schedule for bus loads ``load_mw`` (MW consumed, aligned with ``network.bus_ids``)."""
        load = np.asarray(load_mw, dtype=float)
        if load.shape != (self.network.n_buses,) or not np.all(np.isfinite(load)):
            raise ValueError(f"load_mw must be {self.network.n_buses} finite values")
        t0 = time.perf_counter()
        rhs = load + self.network.shunt_mw
        self._lp.set_row_bounds(self._balance_rows, rhs, rhs)
        msg = _run(self._lp)
        if msg is not None and "Infeasible" in msg:
            return self._failed(msg, time.perf_counter() - t0)
        if msg is not None:
            # HiGHS's active-set QP solver occasionally stops "optimal" with primal
            # infeasibilities (a few % of random case39 loads, whatever the options); the
            # interior-point solver pandapower's rundcopp uses is the fallback.
            logger.info("energy schedule: HiGHS failed (%s), trying PIPS", msg)
            return self._solve_pips(load, t0, msg)
        x = self._lp.values()
        return self._result(
            "optimal",
            x[self._p_cols],
            x[self._flow_cols],
            self._lp.objective(),
            self._lp.duals()[self._balance_rows],
            time.perf_counter() - t0,
        )

    def _result(self, msg, p, flow, cost, price, elapsed) -> ScheduleResult:
        gen = self.network.generators
        return ScheduleResult(
            ok=True,
            message=msg,
            gen_mw=pd.Series(p, index=pd.Index(gen["element"]), name="p_mw"),
            flow_mw=flow,
            cost_eur_per_h=cost,
            price_eur_per_mwh=price,
            solve_time_s=elapsed,
        )

    def _pips_problem(self) -> dict:
        """The same QP in matrix form for PIPS: x = [p (G), theta_mw (B), flow (L)]."""
        from scipy import sparse

        net = self.network
        gen, br = net.generators, net.branches
        n_g, n_b, n_l = net.n_generators, net.n_buses, net.n_branches
        b = br["b_pu"].to_numpy()
        lines = np.arange(n_l)
        f_pos, t_pos = br["from_pos"].to_numpy(), br["to_pos"].to_numpy()
        # flow - b (theta_f - theta_t) = shift
        flow_def = sparse.hstack(
            [
                sparse.csr_matrix((n_l, n_g)),
                sparse.csr_matrix(
                    (np.r_[-b, b], (np.r_[lines, lines], np.r_[f_pos, t_pos])), (n_l, n_b)
                ),
                sparse.identity(n_l, format="csr"),
            ]
        )
        # gen - outflow + inflow = load + shunt
        cg = sparse.csr_matrix(
            (np.ones(n_g), (gen["bus_pos"].to_numpy(), np.arange(n_g))), (n_b, n_g)
        )
        cft = sparse.csr_matrix(
            (np.r_[np.ones(n_l), -np.ones(n_l)], (np.r_[f_pos, t_pos], np.r_[lines, lines])),
            (n_b, n_l),
        )
        balance = sparse.hstack([cg, sparse.csr_matrix((n_b, n_b)), -cft])
        theta_lo = np.full(n_b, -np.inf)
        theta_lo[net.ref_pos] = net.base_mva * net.ref_angle_rad
        theta_hi = theta_lo.copy()
        theta_hi[np.isinf(theta_hi)] = np.inf
        rating = br["rating_mw"].to_numpy()
        n_x = n_g + n_b + n_l
        return {
            "H": sparse.diags(np.r_[2.0 * gen["c2_eur_per_mw2h"].to_numpy(), np.zeros(n_x - n_g)]),
            "c": np.r_[gen["c1_eur_per_mwh"].to_numpy(), np.zeros(n_x - n_g)],
            "A": sparse.vstack([flow_def, balance], format="csr"),
            "xmin": np.r_[gen["p_min_mw"].to_numpy(), theta_lo, -rating],
            "xmax": np.r_[gen["p_max_mw"].to_numpy(), theta_hi, rating],
        }

    def _solve_pips(self, load: np.ndarray, t0: float, highs_msg: str) -> ScheduleResult:
        from pandapower.pypower.qps_pips import qps_pips

        net = self.network
        if self._pips is None:
            self._pips = self._pips_problem()
        prob = self._pips
        rhs = np.r_[net.branches["shift_mw"].to_numpy(), load + net.shunt_mw]
        n_g, n_b, n_l = net.n_generators, net.n_buses, net.n_branches
        x0 = np.clip(np.zeros(n_g + n_b + n_l), prob["xmin"], prob["xmax"])
        try:
            x, f, converged, _, lam = qps_pips(
                prob["H"],
                prob["c"],
                prob["A"],
                rhs,
                rhs,
                prob["xmin"],
                prob["xmax"],
                x0,
                {"verbose": 0},
            )
        except Exception as err:  # noqa: BLE001 - reported, not raised
            converged, f = False, float("nan")
            highs_msg += f"; PIPS raised {type(err).__name__}: {err}"
        elapsed = time.perf_counter() - t0
        if not converged:
            return self._failed(f"{highs_msg}; PIPS fallback did not converge", elapsed)
        price = (lam["mu_l"] - lam["mu_u"])[n_l:]  # d cost / d load, as the HiGHS duals
        return self._result(
            f"optimal (PIPS fallback; HiGHS: {highs_msg})",
            x[:n_g],
            x[n_g + n_b :],
            float(f) + float(net.generators["c0_eur_per_h"].sum()),
            price,
            elapsed,
        )

    def _failed(self, msg: str, elapsed: float) -> ScheduleResult:
        logger.warning("energy schedule failed: %s", msg)
        gen = self.network.generators
        return ScheduleResult(
            ok=False,
            message=msg,
            gen_mw=pd.Series(np.nan, index=pd.Index(gen["element"]), name="p_mw"),
            flow_mw=np.full(self.network.n_branches, np.nan),
            cost_eur_per_h=float("nan"),
            price_eur_per_mwh=np.full(self.network.n_buses, np.nan),
            solve_time_s=elapsed,
        )


# --------------------------------------------------------------------------------------------
# balancing market


#: Segments of a generator's balancing range per direction when its cost is quadratic.
TER_SEGMENTS = 4


def ter_offers(
    network: TransmissionNetwork,
    schedule: ScheduleResult,
    ramp_mw: np.ndarray | float,
    segments: int = TER_SEGMENTS,
) -> pd.DataFrame:
    """Balancing offers of the transmission energy resources (the scheduled generators).

    Up: ``min(p_max - p_sched, ramp)`` MW, down: ``min(p_sched - p_min, ramp)`` MW, each split
    into ``segments`` equal steps priced at the marginal cost ``c1 + 2 c2 p`` at the step's
    midpoint (minus that for down: a generator moved down saves fuel and so pays the TSO). The
    piecewise-linear offer is the quadratic cost curve itself: for every whole step, price times
    MW equals the exact cost change ``C(p1) - C(p0)``. Generators with linear cost offer one
    step. ``ramp_mw`` is per generator (aligned with ``network.generators``) or one value for
    all. offer_id of generator i, step j: ``-(2 (segments i + j) + 1)`` up and ``... + 2)``
    down: negative, so never clashing with DER bid ids, and stable across periods. Offers with
    zero MW are left out. Columns: offer_id, element, bus, direction, mw, price_eur_per_mwh.
    """
    gen = network.generators
    if not schedule.ok:
        logger.warning("no TER offers: the schedule failed (%s)", schedule.message)
        return _offers_frame([], [], [], [], [], [])
    p = schedule.gen_mw.reindex(pd.Index(gen["element"])).to_numpy(dtype=float)
    ramp = np.broadcast_to(np.asarray(ramp_mw, dtype=float), p.shape)
    c1, c2 = gen["c1_eur_per_mwh"].to_numpy(), gen["c2_eur_per_mw2h"].to_numpy()
    up = np.clip(np.minimum(gen["p_max_mw"].to_numpy() - p, ramp), 0.0, None)
    down = np.clip(np.minimum(p - gen["p_min_mw"].to_numpy(), ramp), 0.0, None)
    steps = np.where(c2 != 0.0, segments, 1)
    i = np.repeat(np.arange(len(gen)), steps)
    j = np.concatenate([np.arange(k) for k in steps])
    k = steps[i]
    mid_up = p[i] + (j + 0.5) * up[i] / k
    mid_down = p[i] - (j + 0.5) * down[i] / k
    ids = np.concatenate([-(2 * (segments * i + j) + 1), -(2 * (segments * i + j) + 2)])
    element = np.concatenate([gen["element"].to_numpy()[i]] * 2)
    bus = np.concatenate([gen["bus"].to_numpy()[i]] * 2)
    direction = np.array([UP] * len(i) + [DOWN] * len(i))
    mw = np.concatenate([up[i] / k, down[i] / k])
    price = np.concatenate([c1[i] + 2.0 * c2[i] * mid_up, -(c1[i] + 2.0 * c2[i] * mid_down)])
    keep = mw > MW_TOL
    order = np.argsort(-ids[keep], kind="stable")
    return _offers_frame(
        ids[keep][order],
        element[keep][order],
        bus[keep][order],
        direction[keep][order],
        mw[keep][order],
        price[keep][order],
    )


def _offers_frame(ids, element, bus, direction, mw, price) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "offer_id": pd.Series(ids, dtype="int64"),
            "element": pd.Series(element, dtype="string"),
            "bus": pd.Series(bus, dtype="int64"),
            "direction": pd.Series(direction, dtype="string"),
            "mw": pd.Series(mw, dtype="float64"),
            "price_eur_per_mwh": pd.Series(price, dtype="float64"),
        }
    )


class BalancingMarket:
    """Clears a period's balancing offers: a DC OPF over deviations around the schedule.

    Offers sit in fixed *slots*: every bus has ``capacity[bus, direction]`` slots, each a
    variable ``q_s`` in ``[0, mw_s]`` with objective coefficient ``price_s``. The model is
    declared in pyomo and loaded into HiGHS once; a period writes the slots' column bounds and
    costs (unused slots get 0 MW), the needs (balance row bounds) and the flow limits (flow-limit
    row bounds), only where they changed, and HiGHS re-solves from the previous basis. Every
    bus starts with ``max(slots_per_bus, generators at the bus)`` slots per direction, so TER
    offers always fit; if a bus gets more offers in a direction than it has slots, that capacity
    is doubled until it fits and the model is rebuilt (logged at DEBUG).

    Per bus n: ``sum(up q) - sum(down q) + unserved_up_n - unserved_down_n - (net outflow of
    deviation flows) = need_n``; per rated branch: ``-R <= base_flow + deviation_flow <= R``
    with ``R = max(rating, |base_flow|)``. Objective (EUR/h): ``sum(price * q) + voll *
    sum(unserved_up + unserved_down)``.
    """

    def __init__(
        self,
        network: TransmissionNetwork,
        voll_eur_per_mwh: float,
        slots_per_bus: int = 2,
    ):
        if not voll_eur_per_mwh > 0:
            raise ValueError("voll_eur_per_mwh must be positive")
        self.network = network
        self.voll_eur_per_mwh = float(voll_eur_per_mwh)
        gens_at_bus = np.bincount(
            network.generators["bus_pos"].to_numpy(dtype=np.int64), minlength=network.n_buses
        )
        per_bus = np.maximum(max(int(slots_per_bus), 1), gens_at_bus)
        self.capacity = np.repeat(per_bus[:, None], 2, axis=1).astype(np.int64)
        self._initial_capacity = self.capacity.copy()
        self._rating = network.branches["rating_mw"].to_numpy()
        self._rated = np.flatnonzero(np.isfinite(self._rating))
        self._build()

    def forget_warm_start(self) -> None:
        """Clear the next period as a freshly built market would: from scratch, with the
        initial slot capacity (grown capacity is solver state too: it shapes the LP)."""
        if np.array_equal(self.capacity, self._initial_capacity):
            self._lp.forget_basis()
            return
        self.capacity = self._initial_capacity.copy()
        self._build()

    # ---- model -------------------------------------------------------------------------------

    def _build(self) -> None:
        """(Re)build the model and its solver for the current slot capacity."""
        cap = self.capacity.ravel()  # key = 2 * bus_pos + (0 up | 1 down)
        self._slot_start = np.concatenate([[0], np.cumsum(cap)[:-1]])
        key = np.repeat(np.arange(len(cap)), cap)
        self._slot_bus = key // 2
        self._slot_sign = np.where(key % 2 == 0, 1.0, -1.0)

        m = pyo.ConcreteModel(name=f"balancing {self.network.name}")
        out_br, in_br = _define_dc_network(m, self.network, with_shift=False)
        self._define_slots(m)
        self._define_unserved(m)
        self._define_flow_limits(m)
        self._define_balance(m, out_br, in_br)
        self._define_objective(m)
        self.model = m
        self.n_variables, self.n_constraints = _count(m)
        self._lp = LoadedModel(m, HIGHS_OPTIONS)
        self._q_cols = self._lp.cols(m.q[s] for s in m.S)
        self._unserved_up_cols = self._lp.cols(m.unserved_up[n] for n in m.B)
        self._unserved_down_cols = self._lp.cols(m.unserved_down[n] for n in m.B)
        self._balance_rows = self._lp.rows(m.balance[n] for n in m.B)
        self._flow_rows = self._lp.rows(m.flow_limit[int(k)] for k in self._rated)

    def _define_slots(self, m: pyo.ConcreteModel) -> None:
        """Offer slots, declared empty ([0, 0] MW); clear() writes a period's bounds and costs."""
        m.S = pyo.RangeSet(0, len(self._slot_bus) - 1)
        m.q = pyo.Var(m.S, bounds=(0.0, 0.0))

    def _define_unserved(self, m: pyo.ConcreteModel) -> None:
        m.unserved_up = pyo.Var(m.B, bounds=(0.0, None))
        m.unserved_down = pyo.Var(m.B, bounds=(0.0, None))

    def _define_flow_limits(self, m: pyo.ConcreteModel) -> None:
        """Deviation flow limits, declared for a zero base flow; clear() writes the period's."""
        rating = self._rating
        m.L_lim = pyo.Set(initialize=self._rated.tolist())
        m.flow_limit = pyo.Constraint(
            m.L_lim, rule=lambda m, k: (-float(rating[k]), m.flow[k], float(rating[k]))
        )

    def _define_balance(self, m: pyo.ConcreteModel, out_br, in_br) -> None:
        slots_at: list[list[int]] = [[] for _ in range(self.network.n_buses)]
        for s, n in enumerate(self._slot_bus):
            slots_at[int(n)].append(s)
        sign = self._slot_sign

        def balance_rule(m, n):
            offered = sum(float(sign[s]) * m.q[s] for s in slots_at[n])
            slack = m.unserved_up[n] - m.unserved_down[n]
            return offered + slack - _net_outflow(m, out_br[n], in_br[n]) == 0.0  # need: later

        m.balance = pyo.Constraint(m.B, rule=balance_rule)

    def _define_objective(self, m: pyo.ConcreteModel) -> None:
        voll = self.voll_eur_per_mwh
        m.cost = pyo.Objective(
            expr=sum(TIE_BREAK_EUR_PER_MWH * m.q[s] for s in m.S)  # + price: per period
            + voll * sum(m.unserved_up[n] + m.unserved_down[n] for n in m.B),
            sense=pyo.minimize,
        )

    # ---- per period --------------------------------------------------------------------------

    def _slots_for(self, offers: pd.DataFrame) -> np.ndarray:
        """Slot index of every offer; grows the capacity and rebuilds if a bus overflows."""
        pos = self.network.bus_position(offers["bus"].to_numpy()) if len(offers) else np.zeros(0)
        key = 2 * pos.astype(np.int64) + (offers["direction"].to_numpy() == DOWN).astype(np.int64)
        counts = np.bincount(key, minlength=self.capacity.size).reshape(self.capacity.shape)
        if np.any(counts > self.capacity):
            new = self.capacity.copy()
            while np.any(counts > new):
                new = np.where(counts > new, 2 * new, new)
            logger.debug(
                "balancing model %s: %d bus-direction(s) overflow their slots, rebuilding with "
                "%d slots (was %d)",
                self.network.name,
                int(np.sum(counts > self.capacity)),
                int(new.sum()),
                int(self.capacity.sum()),
            )
            self.capacity = new
            self._build()
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        first = np.searchsorted(sorted_key, sorted_key, side="left")
        rank = np.empty(len(key), dtype=np.int64)
        rank[order] = np.arange(len(key)) - first
        return self._slot_start[key] + rank

    def _check_inputs(self, offers, need, base_flow) -> None:
        missing = [c for c in OFFER_COLUMNS if c not in offers.columns]
        if missing:
            raise ValueError(f"offers lack columns {missing}")
        if need.shape != (self.network.n_buses,) or not np.all(np.isfinite(need)):
            raise ValueError(f"need_mw must be {self.network.n_buses} finite values")
        if base_flow.shape != (self.network.n_branches,) or not np.all(np.isfinite(base_flow)):
            raise ValueError(f"base_flow_mw must be {self.network.n_branches} finite values")
        if len(offers) == 0:
            return
        if not offers["direction"].isin([UP, DOWN]).all():
            raise ValueError("offer direction must be 'up' or 'down'")
        mw = offers["mw"].to_numpy(dtype=float)
        price = offers["price_eur_per_mwh"].to_numpy(dtype=float)
        if not (np.all(np.isfinite(mw)) and np.all(mw >= 0) and np.all(np.isfinite(price))):
            raise ValueError("offer mw must be finite and >= 0 and prices finite")
        unknown = set(offers["bus"].astype(int)) - set(self.network.bus_lookup)
        if unknown:
            raise ValueError(f"offers at buses {sorted(unknown)} not in {self.network.name!r}")
        if offers["offer_id"].duplicated().any():
            raise ValueError("offer_id must be unique")

    def _set_flow_limits(self, base_flow: np.ndarray) -> tuple[str, ...]:
        rating = self._rating[self._rated]
        base = base_flow[self._rated]
        limit = np.maximum(rating, np.abs(base))
        self._lp.set_row_bounds(self._flow_rows, -limit - base, limit - base)
        over = self._rated[np.abs(base) > rating]
        names = tuple(self.network.branches["element"].iloc[over].astype(str))
        if names:
            logger.info("balancing: base flow exceeds rating on %s; limits relaxed", names)
        return names

    def clear(
        self,
        offers: pd.DataFrame,
        need_mw: np.ndarray,
        base_flow_mw: np.ndarray | None = None,
        offer_rows: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> BalancingResult:
        """Clear ``offers`` against the per-bus ``need_mw`` (positive: more injection needed).

        ``base_flow_mw`` is the schedule's flow per branch (default: zero). Offers need columns
        offer_id, bus (transmission bus id), direction, mw, price_eur_per_mwh; TER offers from
        :func:`ter_offers` can simply be concatenated with DER offers. ``offer_rows = (A, b)``
        adds constraints ``A q <= b`` on the accepted MW of the offers (columns of ``A`` in the
        order of ``offers``) for this period only: the TSO-managed model's linearised
        distribution-network constraints.
        """
        need = np.asarray(need_mw, dtype=float)
        base_flow = (
            np.zeros(self.network.n_branches)
            if base_flow_mw is None
            else np.asarray(base_flow_mw, dtype=float)
        )
        self._check_inputs(offers, need, base_flow)
        slot = self._slots_for(offers)  # may rebuild, so before touching the model

        t0 = time.perf_counter()
        offer_mw = offers["mw"].to_numpy(dtype=float)
        offer_price = offers["price_eur_per_mwh"].to_numpy(dtype=float)
        mw = np.zeros(len(self._slot_bus))
        mw[slot] = offer_mw
        lp = self._lp
        lp.set_col_bounds(self._q_cols, np.zeros_like(mw), mw)
        # Costs of unused slots are left as they are: their columns are fixed at 0.
        lp.set_col_costs(self._q_cols[slot], offer_price + TIE_BREAK_EUR_PER_MWH)
        lp.set_row_bounds(self._balance_rows, need, need)
        relaxed = self._set_flow_limits(base_flow)
        matrix, upper = offer_rows if offer_rows is not None else (np.zeros((0, 0)), np.zeros(0))
        with lp.extra_rows(matrix, self._q_cols[slot], upper):
            msg = _run(lp)
        note = f"; limits relaxed on {', '.join(relaxed)}" if relaxed else ""
        if msg is not None:
            elapsed = time.perf_counter() - t0
            logger.warning("balancing market failed: %s", msg)
            return BalancingResult(
                ok=False,
                message=msg + note,
                accepted=_empty_accepted(),
                price_eur_per_mwh=np.full(self.network.n_buses, np.nan),
                unserved_up_mw=float("nan"),
                unserved_down_mw=float("nan"),
                cost_eur=float("nan"),
                solve_time_s=elapsed,
                n_variables=self.n_variables,
                n_constraints=self.n_constraints,
                relaxed_branches=relaxed,
            )
        x = lp.values()
        q = x[self._q_cols[slot]]
        taken = q > MW_TOL
        unserved_up = float(x[self._unserved_up_cols].sum())
        unserved_down = float(x[self._unserved_down_cols].sum())
        price = lp.duals()[self._balance_rows]
        accepted = pd.DataFrame(
            {
                "offer_id": offers["offer_id"].to_numpy(dtype=np.int64)[taken],
                "bus": offers["bus"].to_numpy(dtype=np.int64)[taken],
                "direction": pd.Series(offers["direction"].to_numpy()[taken], dtype="string"),
                "mw": q[taken],
                "price_eur_per_mwh": offer_price[taken],
            }
        )
        return BalancingResult(
            ok=True,
            message="optimal" + note,
            accepted=accepted,
            price_eur_per_mwh=price,
            unserved_up_mw=unserved_up,
            unserved_down_mw=unserved_down,
            cost_eur=float(offer_price @ q + self.voll_eur_per_mwh * (unserved_up + unserved_down)),
            solve_time_s=time.perf_counter() - t0,
            n_variables=self.n_variables,
            n_constraints=self.n_constraints + len(upper),
            relaxed_branches=relaxed,
        )
