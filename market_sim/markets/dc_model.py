"""Model pieces shared by the energy schedule and the balancing market: the DC network.

Both markets are DC optimal power flows in B-theta form, declared once per run as pyomo models
and loaded once into HiGHS (:class:`~market_sim.markets.persistent.LoadedModel`). This module
declares what they share: buses, branches, angles, each branch's DC flow, and the HiGHS options
that make the QP reproduce pandapower's rundcopp.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from market_sim.markets.transmission import TransmissionNetwork

#: HiGHS QP Hessian regularisation; small enough to reproduce pandapower's rundcopp to 1e-6 MW.
QP_REGULARIZATION = 1e-12

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


def define_dc_network(
    m: pyo.ConcreteModel, network: TransmissionNetwork, with_shift: bool
) -> tuple[list[list[int]], list[list[int]]]:
    """Buses, branches, angles and the DC flow definition of each branch.

    The angle variable is ``theta_mw = base_mva * theta_rad`` so that flow coefficients are the
    per-unit susceptances (1..1e3) rather than MW-per-rad values up to 1e5: HiGHS's QP solver
    otherwise ends some solves with small primal infeasibilities and reports a solve error.
    ``with_shift`` adds the phase shifters' constant flow offset; a model over deviations
    leaves it out because the offset is already in the base flow. Returns :func:`_incidence`.
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


def define_flow_limits(m: pyo.ConcreteModel, rating: np.ndarray) -> None:
    """``-rating <= flow <= rating`` on every branch with a finite rating."""
    m.L_lim = pyo.Set(initialize=np.flatnonzero(np.isfinite(rating)).tolist())
    m.flow_limit = pyo.Constraint(
        m.L_lim, rule=lambda m, k: (-float(rating[k]), m.flow[k], float(rating[k]))
    )


def net_outflow(m: pyo.ConcreteModel, out_br: list[int], in_br: list[int]):
    """Flow leaving a bus minus flow entering it (an expression)."""
    return sum(m.flow[k] for k in out_br) - sum(m.flow[k] for k in in_br)


def count(m: pyo.ConcreteModel) -> tuple[int, int]:
    """Unfixed variables and active constraints: the problem size the results report."""
    n_var = sum(1 for v in m.component_data_objects(pyo.Var) if not v.fixed)
    n_con = sum(1 for _ in m.component_data_objects(pyo.Constraint, active=True))
    return n_var, n_con
