"""The energy schedule: a DC optimal power flow of the transmission energy resources.

Declared once per run as a pyomo model and loaded once into HiGHS
(:class:`~market_sim.markets.persistent.LoadedModel`); a period writes only the bus loads into
the nodal balance rows and re-solves from the previous basis, because pyomo's own persistent
updates cost more than the solve itself. HiGHS's QP solver occasionally ends with a "solve
error" on a feasible schedule; the schedule then falls back to PIPS
(:mod:`market_sim.markets.pips_fallback`).

Minimum outputs: at low load the plants' minimum outputs can exceed what the network absorbs
(SimBench EHV's 318 plants with a minimum sum to 11.4 GW, more than its load on a June night).
With a ``relief_eur_per_mwh`` the schedule is the LP relaxation of shutting units down: a unit
may run below its minimum, down to zero, and each MW below it costs that price (the TSO passes
VOLL, the price the balancing market puts on energy it cannot absorb). As it far exceeds any
spread of fuel costs, units go below minimum only when nothing else balances the network; the
MW are ``below_min_mw`` of the result, and where a unit is below minimum the nodal price is its
marginal cost minus that price (negative: more load would spare the relief). Each MW below
minimum enters the objective at the price less the fuel it saves (:func:`relief_costs`).
Without a price the minimum outputs are hard, as in pandapower's rundcopp. (Such a schedule
of SimBench EHV at night ends with HiGHS's status "Unknown", not "Infeasible": presolve
reduces the LP, dual simplex finds it infeasible by the minimum outputs less the load, e.g.
1,273.8 MW, and the postsolve of a non-optimal reduced LP reports "Unknown"; without presolve
HiGHS says "Infeasible". It is not a scaling problem, and PIPS cannot solve it either.)

Units and signs (see :mod:`market_sim.types`): MW with injection positive, costs in EUR/h.
Nodal prices are duals of the nodal balance, the change of the objective in EUR/h per MW of
extra demand: positive when more demand costs more. A failed or infeasible solve never raises:
the result has ``ok=False`` and a message, so the engine can record an event and go on. Invalid
inputs raise ValueError, because they are programming errors, not market outcomes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from market_sim.columns import numbers, reindexed, text
from market_sim.markets.dc_model import (
    HIGHS_OPTIONS,
    count,
    define_dc_network,
    define_flow_limits,
    net_outflow,
)
from market_sim.markets.persistent import LoadedModel
from market_sim.markets.pips_fallback import PipsSchedule
from market_sim.markets.transmission import TransmissionNetwork

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduleResult:
    """Outcome of the energy schedule (a DC OPF) for one period.

    ``gen_mw``: injection per generator (index: element name, e.g. "gen 3"); ``flow_mw``: flow
    per branch from its from-bus to its to-bus, aligned with ``network.branches``;
    ``cost_eur_per_h``: total generation cost incl. constant terms (as pandapower's res_cost);
    ``price_eur_per_mwh``: nodal price (LMP) per bus aligned with ``network.bus_ids``;
    ``below_min_mw``: MW the units together run below their minimum outputs (see the module's
    docstring). ``gen_mw`` is what units produce and ``cost_eur_per_h`` its fuel cost, without
    the relief's price. When ``ok`` is False the numeric fields are NaN.
    """

    ok: bool
    message: str
    gen_mw: pd.Series
    flow_mw: np.ndarray
    cost_eur_per_h: float
    price_eur_per_mwh: np.ndarray
    solve_time_s: float
    below_min_mw: float = 0.0


class EnergySchedule:
    """Day-ahead style energy schedule: DC OPF with quadratic generator costs and line limits.

    Built and loaded into HiGHS once per run; ``solve`` only writes the bus loads into the
    right-hand sides of the nodal balance rows. The nodal balance is ``gen - below - net outflow
    = load + shunt`` per bus (``below``: MW under a unit's minimum output, see the module's
    docstring), so its dual is the LMP (EUR/MWh), positive when more load costs more.
    ``self.model`` declares the problem with the network's base loads; HiGHS holds the last
    period's loads.
    """

    def __init__(self, network: TransmissionNetwork, relief_eur_per_mwh: float | None = None):
        if relief_eur_per_mwh is not None and not relief_eur_per_mwh > 0:
            raise ValueError(f"relief_eur_per_mwh must be positive, got {relief_eur_per_mwh}")
        self.network = network
        self.relief_eur_per_mwh = relief_eur_per_mwh
        #: the units that may run below their minimum output (none without a relief price) and
        #: the objective's cost per MW below it: the price less the fuel it saves
        self.relief_units = relief_units(network) if relief_eur_per_mwh else np.zeros(0, int)
        self._relief_cost = relief_costs(network, self.relief_units, relief_eur_per_mwh or 0.0)
        gen = network.generators
        #: every result's index (the generators' names) and the fuel cost's coefficients, read
        #: once: a result is made every period, and so would they be
        self._gen_index = pd.Index(gen["element"])
        self._c1, self._c2 = gen["c1_eur_per_mwh"].to_numpy(), gen["c2_eur_per_mw2h"].to_numpy()
        self.model = self._build()
        self.n_variables, self.n_constraints = count(self.model)
        m = self.model
        self._lp = LoadedModel(m, HIGHS_OPTIONS)
        self._p_cols = self._lp.cols(m.p[g] for g in m.G)
        self._below_cols = self._lp.cols(m.below[g] for g in m.R)
        self._flow_cols = self._lp.cols(m.flow[k] for k in m.L)
        self._balance_rows = self._lp.rows(m.balance[n] for n in m.B)
        self._pips = PipsSchedule(network, self.relief_units, self._relief_cost[self.relief_units])

    def forget_warm_start(self) -> None:
        """Solve the next period from scratch, as a freshly built schedule would."""
        self._lp.forget_basis()

    def _build(self) -> pyo.ConcreteModel:
        m = pyo.ConcreteModel(name=f"schedule {self.network.name}")
        out_br, in_br = define_dc_network(m, self.network, with_shift=True)
        self._define_generators(m)
        define_flow_limits(m, self.network.branches["rating_mw"].to_numpy())
        self._define_balance(m, out_br, in_br)
        self._define_objective(m)
        return m

    def _define_generators(self, m: pyo.ConcreteModel) -> None:
        gen = self.network.generators
        m.G = pyo.RangeSet(0, len(gen) - 1)
        lo, hi = gen["p_min_mw"].to_numpy(), gen["p_max_mw"].to_numpy()
        m.p = pyo.Var(m.G, bounds=lambda m, g: (float(lo[g]), float(hi[g])))
        m.R = pyo.Set(initialize=self.relief_units.tolist())
        m.below = pyo.Var(m.R, bounds=lambda m, g: (0.0, float(lo[g])))

    def _define_balance(self, m: pyo.ConcreteModel, out_br, in_br) -> None:
        net = self.network
        gens_at: list[list[int]] = [[] for _ in range(net.n_buses)]
        for g, pos in enumerate(net.generators["bus_pos"]):
            gens_at[int(pos)].append(g)
        relieved = set(self.relief_units.tolist())
        demand = net.base_load_mw + net.shunt_mw  # placeholder; solve() writes the period's

        def balance_rule(m, n):
            output = sum(m.p[g] for g in gens_at[n]) - sum(
                m.below[g] for g in gens_at[n] if g in relieved
            )
            return output - net_outflow(m, out_br[n], in_br[n]) == float(demand[n])

        m.balance = pyo.Constraint(m.B, rule=balance_rule)

    def _define_objective(self, m: pyo.ConcreteModel) -> None:
        gen = self.network.generators
        c0, c1, c2 = (
            gen[c].to_numpy() for c in ("c0_eur_per_h", "c1_eur_per_mwh", "c2_eur_per_mw2h")
        )
        m.cost = pyo.Objective(
            expr=sum(float(c2[g]) * m.p[g] ** 2 for g in m.G if c2[g] != 0.0)
            + sum(float(c1[g]) * m.p[g] for g in m.G)
            + sum(float(self._relief_cost[g]) * m.below[g] for g in m.R)
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
        msg = self._lp.run()
        if msg is not None and "Infeasible" in msg:
            return self._failed(msg, time.perf_counter() - t0)
        if msg is not None:
            logger.info("energy schedule: HiGHS failed (%s), trying PIPS", msg)
            return self._solve_pips(load, t0, msg)
        x = self._lp.values()
        below = np.zeros(self.network.n_generators)
        below[self.relief_units] = x[self._below_cols]
        return self._result(
            "optimal",
            x[self._p_cols],
            below,
            x[self._flow_cols],
            self._lp.objective(),
            self._lp.duals()[self._balance_rows],
            time.perf_counter() - t0,
        )

    def _solve_pips(self, load: np.ndarray, t0: float, highs_msg: str) -> ScheduleResult:
        solution, note = self._pips.solve(load)
        elapsed = time.perf_counter() - t0
        if solution is None:
            return self._failed(f"{highs_msg}; {note}", elapsed)
        return self._result(
            f"optimal (PIPS fallback; HiGHS: {highs_msg})",
            solution.gen_mw,
            solution.below_min_mw,
            solution.flow_mw,
            solution.cost_eur_per_h,
            solution.price_eur_per_mwh,
            elapsed,
        )

    def _result(self, msg, p, below, flow, objective, price, elapsed) -> ScheduleResult:
        """The result of a solve of ``p`` and ``below`` (per unit) at ``objective`` (EUR/h).

        Units produce ``p - below``; the cost is their fuel cost, the objective without the
        relief's price (both corrections are exactly 0.0 when no unit is below minimum).
        """
        output = p - below
        fuel_saved = self._fuel_cost(p) - self._fuel_cost(output)
        relief = self._relief_cost * below
        return ScheduleResult(
            ok=True,
            message=msg,
            gen_mw=pd.Series(output, index=self._gen_index, name="p_mw"),
            flow_mw=flow,
            cost_eur_per_h=objective - float(relief.sum()) - float(fuel_saved.sum()),
            price_eur_per_mwh=price,
            solve_time_s=elapsed,
            below_min_mw=float(below.sum()),
        )

    def _fuel_cost(self, p: np.ndarray) -> np.ndarray:
        """Each unit's variable cost (EUR/h) at output ``p``: ``c1 p + c2 p^2``."""
        return self._c1 * p + self._c2 * p**2

    def _failed(self, msg: str, elapsed: float) -> ScheduleResult:
        logger.warning("energy schedule failed: %s", msg)
        return ScheduleResult(
            ok=False,
            message=msg,
            gen_mw=pd.Series(np.nan, index=self._gen_index, name="p_mw"),
            flow_mw=np.full(self.network.n_branches, np.nan),
            cost_eur_per_h=float("nan"),
            price_eur_per_mwh=np.full(self.network.n_buses, np.nan),
            solve_time_s=elapsed,
            below_min_mw=float("nan"),
        )


def relief_units(network: TransmissionNetwork) -> np.ndarray:
    """Positions of the units with a positive minimum output: those that may run below it."""
    return np.flatnonzero(network.generators["p_min_mw"].to_numpy() > 0.0)


def relief_costs(
    network: TransmissionNetwork, units: np.ndarray, price_eur_per_mwh: float
) -> np.ndarray:
    """Per unit (0 for those not in ``units``): what one MW below its minimum output costs the
    schedule, ``price`` less the marginal cost at the minimum (the fuel it saves; exact for the
    linear costs of SimBench, a linearisation at the minimum for quadratic ones).

    Raises ValueError if that is not positive for some unit: running below minimum would then
    pay for itself, and the price is meant as the last resort.
    """
    gen = network.generators
    p_min = gen["p_min_mw"].to_numpy()
    marginal = gen["c1_eur_per_mwh"].to_numpy() + 2.0 * gen["c2_eur_per_mw2h"].to_numpy() * p_min
    cost = np.zeros(len(gen))
    cost[units] = price_eur_per_mwh - marginal[units]
    if np.any(cost[units] <= 0.0):
        worst = float(marginal[units].max())
        raise ValueError(
            f"relief price {price_eur_per_mwh} EUR/MWh must exceed every unit's marginal cost at "
            f"its minimum output (up to {worst:.1f} EUR/MWh)"
        )
    return cost


def schedule_dispatch(
    network: TransmissionNetwork, result: ScheduleResult
) -> dict[str, np.ndarray]:
    """The schedule's injection per generator as the columns element, bus, p_mw of the
    ``schedule_dispatch`` table: what the TER balancing offers are built around (NaN if the
    schedule failed). Columns, not a table: the record stage keeps them as arrays; copies,
    not the network's own columns, so that no reader can change the network through them."""
    gen = network.generators
    element = text(gen, "element")
    p_mw = reindexed(result.gen_mw, element)  # NaN at a generator without an output
    bus = numbers(gen, "bus", np.int64)
    return {"element": element.copy(), "bus": bus.copy(), "p_mw": p_mw}
