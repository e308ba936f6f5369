"""Sensitivities of monitored quantities to the active injections, from one power flow.

Validation and the markets linearise the network around a converged power flow: how much does
a bus voltage or a branch loading move per MW injected at each bus? One adjoint solve per
constraint (:mod:`.adjoint`) with the Jacobian of :mod:`.jacobian` answers it for the whole
network at once. Only the lightsim2grid path keeps a solver state; on the pandapower fallback
path there are no sensitivities (None).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from market_sim.grid.adjoint import adjoint_solve
from market_sim.grid.jacobian import branch_loading_gradient, factorised_jacobian

if TYPE_CHECKING:
    from market_sim.grid.lightsim_model import Model
    from market_sim.grid.powerflow import PowerFlowDetail


def element_case_bus(detail: PowerFlowDetail, table: str, positions: np.ndarray) -> np.ndarray:
    """Solver bus of elements (by table position); -1 if disconnected or no fast model."""
    if detail.state is None:
        return np.full(len(positions), -1, dtype=np.int64)
    return detail.state.model.elem_idx[table][np.asarray(positions, dtype=np.int64)]


def injection_sensitivities(
    detail: PowerFlowDetail,
    constraints: list[tuple[str, int]],
    buses: np.ndarray | None = None,
    reuse: dict | None = None,
    reuse_tol: float = 0.0,
) -> np.ndarray | None:
    """d(constraint value) / d(active injection in MW) at every solver bus.

    ``constraints`` are ``("vm", bus position)``, ``("line", line position)`` or
    ``("trafo", trafo position)``; values are |V| in pu and loading in percent (at the branch
    end that carries the larger loading). One adjoint solve J^T lambda = dg/dx per constraint,
    all with a single LU factorisation, gives the row of the whole network at once. Returns
    an array ``[n_constraints, n_solver_buses]``, or None on the pandapower fallback path.

    ``buses`` (solver buses, -1 for none) selects the columns returned, in that order (0 for
    -1): validation needs only the buses with bids, and on the 10k-bus grid writing the full
    ``[k, 10k]`` array costs more than the columns it needs.

    ``reuse`` (a dict owned by the caller, empty at first) keeps the last factorisation: while
    no solver-bus voltage moved more than ``reuse_tol`` (pu, complex) from the point where it
    was factorised, the solves use it (with the gradients at the new point) instead of a new
    factorisation, which costs more than the solves. The sensitivities are then those of a
    nearby point: good for a linearisation that an AC power flow checks anyway.
    """
    state = detail.state
    if state is None or not constraints:
        return None
    model, v = state.model, state.v
    grad = constraint_gradients(model, v, constraints)
    factors = _exact_factors(model, v) if reuse is None else _factors(model, v, reuse, reuse_tol)
    if buses is None:
        has_p = model.a_pos >= 0
        lam = adjoint_solve(factors, grad, model.a_pos[has_p])
        out = np.zeros((len(constraints), len(v)))
        out[:, has_p] = lam.T / model.base_mva
        return out
    buses = np.asarray(buses, dtype=np.int64)
    a = np.where(buses >= 0, model.a_pos[np.maximum(buses, 0)], -1)
    out = adjoint_solve(factors, grad, np.maximum(a, 0)).T / model.base_mva
    out[:, a < 0] = 0.0
    return out


def constraint_gradients(
    model: Model, v: np.ndarray, constraints: list[tuple[str, int]]
) -> np.ndarray:
    """[n_state, n_constraints] d(constraint value)/d(power-flow state), one column each.

    A voltage magnitude's column is a unit vector (none for a bus without a magnitude in the
    state): all of them are set by one indexed assignment; a branch loading's is its own sum.
    """
    grad = np.zeros((len(model.pvpq) + len(model.pq), len(constraints)))
    cols, buses, branches = [], [], []
    for j, (kind, pos) in enumerate(constraints):
        if kind == "vm":
            cols.append(j)
            buses.append(pos)
        else:
            branches.append(j)
    if cols:
        bus = model.bus_idx[buses]
        m = np.where(bus >= 0, model.m_pos[bus], -1)
        on = m >= 0
        grad[m[on], np.array(cols)[on]] = 1.0
    if branches:
        vnorm = v / np.abs(v)
        for j in branches:
            kind, pos = constraints[j]
            branch_loading_gradient(model, v, vnorm, kind, pos, grad[:, j])
    return grad


def _factors(model: Model, v: np.ndarray, reuse: dict, reuse_tol: float) -> tuple:
    """The Jacobian factors at ``v``, or those kept in ``reuse`` if ``v`` is close enough."""
    if reuse.get("model") is not model or np.max(np.abs(v - reuse["v"]), initial=0.0) > reuse_tol:
        reuse.update(model=model, v=v.copy(), lu=_exact_factors(model, v))
    return reuse["lu"]


#: The last few factorisations, each with the model and the voltages it was computed at.
_RECENT: list[tuple[Model, np.ndarray, tuple]] = []
#: How many are kept: a validation linearises at its baseline again in every round of both
#: directions, with OLTC at each tap candidate's own baseline (5 on the quickstart).
_RECENT_SIZE = 8


def _exact_factors(model: Model, v: np.ndarray) -> tuple:
    """The factors of the Jacobian of ``model`` at ``v``: recomputed, or the same factors
    computed earlier at exactly (bit for bit) the same ``v`` on the same model object.

    Exact by construction: the Jacobian is a function of the model's admittances and ``v``
    only, and the same matrix is factorised the same way (on the model's one plan, or by
    SuperLU), so a hit returns what a new factorisation would. The entry holds the model, so
    no other model can take its identity (a new grid after
    :func:`~market_sim.grid.lightsim_model.forget_models` never matches).
    """
    probe = model.pq[0] if len(model.pq) else 0
    for i, (m, at, factors) in enumerate(_RECENT):
        # One pq bus's voltage tells most points apart before the whole vector is compared.
        if m is model and at[probe] == v[probe] and np.array_equal(at, v):
            _RECENT.insert(0, _RECENT.pop(i))
            return factors
    factors = factorised_jacobian(model, v)
    _RECENT.insert(0, (model, v.copy(), factors))
    del _RECENT[_RECENT_SIZE:]
    return factors
