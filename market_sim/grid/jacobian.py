"""Derivatives with respect to the Newton-Raphson state of a :class:`~.lightsim_model.Model`.

The state is lightsim2grid's: voltage angles of the pv and pq buses, then magnitudes of the
pq buses (``Model.a_pos`` / ``Model.m_pos``). :func:`jacobian` differentiates the power
balance, :func:`branch_loading_gradient` the loading of one line or transformer; the adjoint
solves of :mod:`.sensitivities` combine the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from market_sim.grid.lightsim_model import Model


def _jacobian_pattern(model: Model) -> tuple[np.ndarray, ...]:
    """Index arrays that map Ybus entries and bus diagonals onto Jacobian entries.

    Computed once per model so that each Jacobian fills numbers into a fixed pattern instead
    of slicing sparse matrices.
    """
    y = model.ybus.tocoo()
    n = model.ybus.shape[0]
    r = np.r_[y.row, np.arange(n)].astype(np.int64)
    c = np.r_[y.col, np.arange(n)].astype(np.int64)
    a, m = model.a_pos, model.m_pos
    blocks = []  # (entry mask, J rows, J cols) for the four blocks
    for row_map, col_map in ((a, a), (a, m), (m, a), (m, m)):
        sel = (row_map[r] >= 0) & (col_map[c] >= 0)
        blocks.append((sel, row_map[r[sel]], col_map[c[sel]]))
    rows = np.concatenate([b[1] for b in blocks])
    cols = np.concatenate([b[2] for b in blocks])
    return y.row.astype(np.int64), y.col.astype(np.int64), y.data, blocks, rows, cols


def jacobian(model: Model, v: np.ndarray) -> sp.csc_matrix:
    """Polar power-flow Jacobian d[P(pvpq), Q(pq)] / d[Va(pvpq), Vm(pq)] in pu, solver buses.

    Built at the converged voltages rather than taken from lightsim2grid (``get_J_solver``),
    which holds the Jacobian of the last iteration, before the final update, and none when a
    warm start converges without iterating. Same formulas as pypower's dSbus_dV:
    dS/dVa = j diag(V) conj(diag(I) - Y diag(V)),
    dS/dVm = diag(V) conj(Y diag(V/|V|)) + conj(diag(I)) diag(V/|V|).
    """
    if model.jac_pattern is None:
        model.jac_pattern = _jacobian_pattern(model)
    yr, yc, yd, blocks, rows, cols = model.jac_pattern
    ibus = model.ybus @ v
    vnorm = v / np.abs(v)
    ds_dva = np.r_[-1j * v[yr] * np.conj(yd * v[yc]), 1j * v * np.conj(ibus)]
    ds_dvm = np.r_[v[yr] * np.conj(yd * vnorm[yc]), np.conj(ibus) * vnorm]
    parts = (ds_dva.real, ds_dvm.real, ds_dva.imag, ds_dvm.imag)
    data = np.concatenate([part[b[0]] for part, b in zip(parts, blocks, strict=True)])
    size = len(model.pvpq) + len(model.pq)
    return sp.csc_matrix((data, (rows, cols)), shape=(size, size))


def _branch_admittances(model: Model, kind: str) -> tuple[np.ndarray, ...]:
    """Solver buses at both ends and the effective two-port admittances of every branch.

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
        )
    return model.branch_y[kind]


def _branch_ends(model: Model, v: np.ndarray, kind: str, pos: int) -> list[tuple]:
    """Per connected end of a branch: (current pu, loading % per pu, {solver bus: admittance})."""
    b1, b2, y11, y12, y21, y22 = _branch_admittances(model, kind)
    ends = []
    for end, bus, (ya, yb) in ((0, b1, (y11, y12)), (1, b2, (y21, y22))):
        terms = {int(b): y for b, y in ((b1[pos], ya[pos]), (b2[pos], yb[pos])) if b >= 0}
        if bus[pos] < 0 or not terms:
            continue
        current = sum(y * v[b] for b, y in terms.items())
        kv = model.bus_kv[bus[pos]]
        if kind == "line":
            k = model.base_mva / (np.sqrt(3) * kv) / model.line_rating[pos] * 100.0
        else:
            k = model.base_mva / (np.sqrt(3) * kv) * model.trafo_vn[pos, end]
            k = k / model.trafo_rating[pos] * 100.0
        ends.append((current, k, terms))
    return ends


def branch_loading_gradient(
    model: Model, v: np.ndarray, vnorm: np.ndarray, kind: str, pos: int, out: np.ndarray
) -> None:
    """Add d(loading %)/d(power-flow state) of one line or transformer into ``out``.

    The loading is that of the branch end with the larger loading, as in the power flow's
    summary; ``out`` is indexed like the Jacobian's state (angles, then magnitudes).
    """
    ends = _branch_ends(model, v, kind, pos)
    if not ends:
        return
    current, k, terms = max(ends, key=lambda e: abs(e[0]) * e[1])
    if abs(current) == 0:
        return
    cols = np.fromiter(terms, dtype=np.int64)
    y = np.fromiter(terms.values(), dtype=complex)
    d_va = 1j * y * v[cols]
    d_vm = y * vnorm[cols]
    scale = k / abs(current)
    a, m = model.a_pos[cols], model.m_pos[cols]
    np.add.at(out, a[a >= 0], scale * np.real(np.conj(current) * d_va[a >= 0]))
    np.add.at(out, m[m >= 0], scale * np.real(np.conj(current) * d_vm[m >= 0]))
