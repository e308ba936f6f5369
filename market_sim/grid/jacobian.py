"""Derivatives with respect to the Newton-Raphson state of a :class:`~.lightsim_model.Model`.

The state is lightsim2grid's: voltage angles of the pv and pq buses, then magnitudes of the
pq buses (``Model.a_pos`` / ``Model.m_pos``). :func:`jacobian` differentiates the power
balance (:func:`factorised_jacobian` factorises it for the adjoint solves),
:func:`branch_loading_gradient` the loading of one line or transformer; the adjoint solves of
:mod:`.sensitivities` combine the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from market_sim.grid.adjoint import StaticLU, factorise
from market_sim.grid.lightsim_model import Model


@dataclass
class _Pattern:
    """Where the numbers of a Jacobian go, fixed for one model.

    The candidate entries are the Ybus entries, then one bus diagonal per bus, of each of the
    four derivatives dP/dVa, dP/dVm, dQ/dVa, dQ/dVm, stacked in that order; those that land
    in J (their bus has that state variable), sorted column by column, give the CSC structure
    ``indptr`` / ``indices``. ``take_first`` picks, per J position, the first candidate that
    lands there; ``take_again`` the other one of the positions ``again`` (at most two share a
    position: a Ybus diagonal and its bus diagonal, the blocks being disjoint and the maps
    a_pos / m_pos one-to-one), so their sum does not depend on the order they are added in.
    ``matrix``: a CSC matrix of that structure that :func:`factorised_jacobian` gives each
    Jacobian's numbers to (a new one's format checks cost a sixth of a factorisation here).
    ``plan``: the LU plan of the structure (:class:`~.adjoint.StaticLU`; None where SuperLU
    factorises every Jacobian), made at the first factorisation (``planned``).
    """

    y_row: np.ndarray
    y_col: np.ndarray
    y_data: np.ndarray
    take_first: np.ndarray
    take_again: np.ndarray
    again: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    matrix: sp.csc_matrix
    plan: StaticLU | None = None
    planned: bool = False


def _jacobian_pattern(model: Model) -> _Pattern:
    """The :class:`_Pattern` of ``model``: computed once, so that each Jacobian fills numbers
    into a fixed CSC structure instead of slicing sparse matrices or summing COO entries."""
    y = model.ybus.tocoo()
    n = model.ybus.shape[0]
    r = np.concatenate([y.row, np.arange(n)]).astype(np.int64)
    c = np.concatenate([y.col, np.arange(n)]).astype(np.int64)
    a, m = model.a_pos, model.m_pos
    takes, rows, cols = [], [], []
    # The order of the stacked derivatives in jacobian(): dP/dVa, dP/dVm, dQ/dVa, dQ/dVm.
    for k, (row_map, col_map) in enumerate(((a, a), (a, m), (m, a), (m, m))):
        sel = (row_map[r] >= 0) & (col_map[c] >= 0)
        takes.append(k * len(r) + np.flatnonzero(sel))
        rows.append(row_map[r[sel]])
        cols.append(col_map[c[sel]])
    row, col = np.concatenate(rows), np.concatenate(cols)
    order = np.lexsort((row, col))
    take, row, col = np.concatenate(takes)[order], row[order], col[order]
    first = np.r_[True, (row[1:] != row[:-1]) | (col[1:] != col[:-1])]
    again = (np.cumsum(first) - 1)[~first]
    assert len(np.unique(again)) == len(again)  # at most two entries per position
    size = len(model.pvpq) + len(model.pq)
    indptr = np.searchsorted(col[first], np.arange(size + 1)).astype(np.int32)
    indices = row[first].astype(np.int32)
    matrix = sp.csc_matrix((np.zeros(len(indices)), indices, indptr), shape=(size, size))
    matrix.has_canonical_format = True  # sorted by (column, row), one entry per position
    return _Pattern(
        y.row.astype(np.int64),
        y.col.astype(np.int64),
        y.data,
        take[first],
        take[~first],
        again,
        indices,
        indptr,
        matrix,
    )


def jacobian(model: Model, v: np.ndarray) -> sp.csc_matrix:
    """Polar power-flow Jacobian d[P(pvpq), Q(pq)] / d[Va(pvpq), Vm(pq)] in pu, solver buses.

    Built at the converged voltages rather than taken from lightsim2grid (``get_J_solver``),
    which holds the Jacobian of the last iteration, before the final update, and none when a
    warm start converges without iterating. Same formulas as pypower's dSbus_dV:
    dS/dVa = j diag(V) conj(diag(I) - Y diag(V)),
    dS/dVm = diag(V) conj(Y diag(V/|V|)) + conj(diag(I)) diag(V/|V|).
    """
    pat = _pattern(model)
    size = len(model.pvpq) + len(model.pq)
    return sp.csc_matrix((_values(model, pat, v), pat.indices, pat.indptr), shape=(size, size))


def factorised_jacobian(model: Model, v: np.ndarray) -> tuple:
    """:func:`~.adjoint.factorise`'s factors of :func:`jacobian` at ``v``, on the pattern's
    plan (:class:`~.adjoint.StaticLU`), or SuperLU's where the plan's pivots are too small.
    The numbers go to the pattern's one ``matrix`` (a new array each time, never written into,
    so no earlier factorisation's input changes; neither factorisation keeps it)."""
    pat = _pattern(model)
    pat.matrix.data = _values(model, pat, v)
    if not pat.planned:
        pat.plan, pat.planned = StaticLU.of(pat.matrix), True
    factors = pat.plan.factorise(pat.matrix) if pat.plan is not None else None
    return factors if factors is not None else factorise(pat.matrix)


def _pattern(model: Model) -> _Pattern:
    if model.jac_pattern is None:
        model.jac_pattern = _jacobian_pattern(model)
    return model.jac_pattern


def _values(model: Model, pat: _Pattern, v: np.ndarray) -> np.ndarray:
    """The Jacobian's numbers at ``v`` in the CSC order of ``pat`` (see :func:`jacobian`)."""
    yr, yc, yd = pat.y_row, pat.y_col, pat.y_data
    ibus = model.ybus @ v
    vnorm = v / np.abs(v)
    v_row = v[yr]
    ds_dva = np.concatenate([-1j * v_row * np.conj(yd * v[yc]), 1j * v * np.conj(ibus)])
    ds_dvm = np.concatenate([v_row * np.conj(yd * vnorm[yc]), np.conj(ibus) * vnorm])
    stacked = np.concatenate([ds_dva.real, ds_dvm.real, ds_dva.imag, ds_dvm.imag])
    data = stacked[pat.take_first]
    data[pat.again] += stacked[pat.take_again]  # positions ``again`` are distinct
    return data


def _branch_admittances(model: Model, kind: str) -> tuple[Any, ...]:
    """Solver buses at both ends and the effective two-port admittances of every branch, and
    the branches' connected ends as :func:`_branch_ends` finds them (filled on first use).

    Read once per model from the lightsim2grid grid (half-open branches are already reduced
    to the admittance at their connected end); used for the current gradients.
    """
    if kind not in model.branch_y:
        el = model.grid.get_lines() if kind == "line" else model.grid.get_2_windings_transformers()
        solver_of = np.full(len(model.v0), -1, dtype=np.int64)
        solver_of[model.to_grid] = np.arange(len(model.to_grid))

        def side(ids: Any) -> np.ndarray:
            ids = np.asarray(ids, dtype=np.int64)
            return np.where(ids >= 0, solver_of[np.maximum(ids, 0)], -1)

        model.branch_y[kind] = (
            side(el.get_bus_id_side_1()),
            side(el.get_bus_id_side_2()),
            *(
                np.asarray(f(), dtype=complex)
                for f in (
                    el.get_yac_eff_11,
                    el.get_yac_eff_12,
                    el.get_yac_eff_21,
                    el.get_yac_eff_22,
                )
            ),
            {},
        )
    return model.branch_y[kind]


@dataclass(frozen=True)
class _End:
    """A connected end of a branch, as far as it depends on the model only: the solver buses
    whose voltages drive its current with their admittances (``terms``, each bus once, as
    scalars for the current's sum; ``buses`` and ``y`` as arrays for its gradient), which of
    them have an angle / a magnitude in the state and where (``angle``, ``magnitude``), and
    the loading (%) per pu of current ``k``."""

    terms: tuple[tuple[int, Any], ...]
    buses: np.ndarray
    y: np.ndarray
    angle: tuple[np.ndarray, np.ndarray]
    magnitude: tuple[np.ndarray, np.ndarray]
    k: Any


def _branch_ends(model: Model, kind: str, pos: int) -> tuple[_End, ...]:
    """The connected ends of a branch (:class:`_End`), found once per model and branch: a
    loading's gradient is asked for at every linearisation, and finding them each time was a
    third of the constraint gradients' time on the quickstart."""
    b1, b2, y11, y12, y21, y22, found = _branch_admittances(model, kind)
    if pos not in found:
        ends = []
        for end, bus, (ya, yb) in ((0, b1, (y11, y12)), (1, b2, (y21, y22))):
            terms = {int(b): y for b, y in ((b1[pos], ya[pos]), (b2[pos], yb[pos])) if b >= 0}
            if bus[pos] < 0 or not terms:
                continue
            kv = model.bus_kv[bus[pos]]
            if kind == "line":
                k = model.base_mva / (np.sqrt(3) * kv) / model.line_rating[pos] * 100.0
            else:
                k = model.base_mva / (np.sqrt(3) * kv) * model.trafo_vn[pos, end]
                k = k / model.trafo_rating[pos] * 100.0
            buses = np.fromiter(terms, dtype=np.int64)
            a, m = model.a_pos[buses], model.m_pos[buses]
            ends.append(
                _End(
                    tuple(terms.items()),
                    buses,
                    np.fromiter(terms.values(), dtype=complex),
                    (np.flatnonzero(a >= 0), a[a >= 0]),
                    (np.flatnonzero(m >= 0), m[m >= 0]),
                    k,
                )
            )
        found[pos] = tuple(ends)
    return found[pos]


def branch_loading_gradient(
    model: Model, v: np.ndarray, vnorm: np.ndarray, kind: str, pos: int, out: np.ndarray
) -> None:
    """Add d(loading %)/d(power-flow state) of one line or transformer into ``out``.

    The loading is that of the branch end with the larger loading (the first of equals), as
    in the power flow's summary; ``out`` is indexed like the Jacobian's state (angles, then
    magnitudes), and a branch writes each of its positions once.
    """
    best, load, current = None, 0.0, 0j
    for end in _branch_ends(model, kind, pos):
        i = sum(y * v[b] for b, y in end.terms)
        if best is None or abs(i) * end.k > load:
            best, load, current = end, abs(i) * end.k, i
    if best is None or abs(current) == 0:
        return
    scale = best.k / abs(current)
    d_va = 1j * best.y * v[best.buses]
    d_vm = best.y * vnorm[best.buses]
    for (which, state), d in ((best.angle, d_va), (best.magnitude, d_vm)):
        out[state] += scale * np.real(np.conj(current) * d[which])
