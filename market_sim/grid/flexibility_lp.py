"""The linear program of a P-Q flexibility area: one HiGHS model, rows learnt per direction.

:func:`interface_and_constraint_sensitivities` gives the rows' coefficients (active and
reactive, interface and constraints); :class:`SupportLp` keeps the model across the support
directions (only the objective changes; a row learnt in one direction is needed by its
neighbours); :class:`Cuts` writes the linearised network limits into it.
"""

from __future__ import annotations

import highspy
import numpy as np
import scipy.sparse as sp

from market_sim import kernels
from market_sim.grid.adjoint import adjoint_solve
from market_sim.grid.constraints import Caps, values
from market_sim.grid.jacobian import factorised_jacobian
from market_sim.grid.linearised import FLEXIBILITY_AREA, KINDS, SENSITIVITY_KIND, Key, bounds
from market_sim.grid.powerflow import PowerFlowDetail
from market_sim.grid.sensitivities import constraint_gradients

#: An LP row counts as binding when its activity is this close to its bound.
BINDING_TOL = 1e-7
#: Row entries below this fraction of the row's largest are dropped (sparser LPs; the margins
#: cover far more than the error).
DROP_TOL = 1e-6


def interface_and_constraint_sensitivities(
    detail: PowerFlowDetail, keys: list[Key]
) -> tuple[np.ndarray, np.ndarray] | None:
    """d(value)/d(P injection MW) and d(value)/d(Q injection Mvar) at every solver bus.

    Rows: interface P (MW), interface Q (Mvar), then ``keys`` in the orientation of
    :func:`~market_sim.grid.constraints.values` (vmin negated; loading in percent). Why not
    :func:`~market_sim.grid.sensitivities.injection_sensitivities`: it returns only the
    active-power columns (the angle rows of the adjoint); the area needs the reactive ones
    (magnitude rows) and the slack bus's power as well. Same constraint gradients
    (:func:`~market_sim.grid.sensitivities.constraint_gradients`), same factorisation and
    triangular solves (one factorisation for all rows). None on the pandapower fallback path
    (no solver state).
    """
    state = detail.state
    if state is None:
        return None
    model, v = state.model, state.v
    if len(model.ref) != 1:
        return None
    n_state = len(model.pvpq) + len(model.pq)
    grad = np.zeros((n_state, 2 + len(keys)))
    vnorm = v / np.abs(v)
    a_pos, m_pos = model.a_pos, model.m_pos

    # Interface = -(slack bus injection): S_ref = V_r conj(sum_j Y_rj V_j); only neighbours j
    # of the slack carry state variables. Scaled to MW / Mvar (the others stay per unit).
    r = int(model.ref[0])
    row = model.ybus.getrow(r).tocoo()
    j, y = row.col, row.data
    other = j != r
    j, y = j[other], y[other]
    ds_dva = -1j * v[r] * np.conj(y * v[j])
    ds_dvm = v[r] * np.conj(y * vnorm[j])
    for col, part in ((0, np.real), (1, np.imag)):
        a, m = a_pos[j], m_pos[j]
        np.add.at(grad[:, col], a[a >= 0], -model.base_mva * part(ds_dva[a >= 0]))
        np.add.at(grad[:, col], m[m >= 0], -model.base_mva * part(ds_dvm[m >= 0]))

    if keys:
        shared = [(SENSITIVITY_KIND[kind], pos) for kind, pos in keys]
        grad[:, 2:] = constraint_gradients(model, v, shared)
        grad[:, 2 + np.flatnonzero([kind == "vmin" for kind, _ in keys])] *= -1.0

    has_a, has_m = a_pos >= 0, m_pos >= 0
    rows = np.r_[a_pos[has_a], m_pos[has_m]]
    lam = adjoint_solve(factorised_jacobian(model, v), grad, rows) / model.base_mva
    n_a = int(has_a.sum())
    d_p = np.zeros((grad.shape[1], len(v)))
    d_q = np.zeros((grad.shape[1], len(v)))
    d_p[:, has_a] = lam[:n_a].T
    d_q[:, has_m] = lam[n_a:].T
    # An injection at the slack bus itself flows straight into the transmission network.
    d_p[0, r] = 1.0
    d_q[1, r] = 1.0
    return d_p, d_q


class SupportLp:
    """One HiGHS model kept across directions: rows are only added, the objective changes.

    Columns are the bids and reactive set-points ``z`` followed by the bus injection changes
    ``w = w_map z`` (equality rows); network rows and the objective act on ``w``.
    """

    def __init__(self, lower: np.ndarray, upper: np.ndarray, w_map: sp.csr_matrix) -> None:
        self.h = kernels.one_thread_highs(presolve="off")
        self.lower, self.upper = lower, upper  # of the z columns
        self.n_z, self.n_w = len(lower), w_map.shape[0]
        self.solves = 0
        inf = highspy.kHighsInf
        self.h.addVars(self.n_z, lower, upper)
        self.h.addVars(self.n_w, np.full(self.n_w, -inf), np.full(self.n_w, inf))
        link = sp.hstack([w_map, -sp.identity(self.n_w)]).tocsr()
        self._add(link, np.zeros(self.n_w), np.zeros(self.n_w))

    def _add(self, a: sp.csr_matrix, lower: np.ndarray, upper: np.ndarray) -> None:
        a = sp.csr_matrix(a)
        a.eliminate_zeros()
        self.h.addRows(
            a.shape[0],
            np.asarray(lower, float),
            np.asarray(upper, float),
            a.nnz,
            a.indptr[:-1].astype(np.int32),
            a.indices.astype(np.int32),
            a.data.astype(float),
        )

    def add_z_rows(self, a: np.ndarray, rhs: np.ndarray) -> None:
        """Rows ``a z <= rhs`` on the bid / set-point columns."""
        if len(rhs):
            a = sp.hstack([sp.csr_matrix(a), sp.csr_matrix((len(rhs), self.n_w))])
            self._add(a, np.full(len(rhs), -highspy.kHighsInf), rhs)

    def add_w_rows(self, a: np.ndarray, rhs: np.ndarray) -> None:
        """Rows ``a w <= rhs`` on the bus variables (negligible entries dropped)."""
        if len(rhs):
            big = np.abs(a).max(axis=1, keepdims=True)
            a = np.where(np.abs(a) > DROP_TOL * big, a, 0.0)
            a = sp.hstack([sp.csr_matrix((len(rhs), self.n_z)), sp.csr_matrix(a)])
            self._add(a, np.full(len(rhs), -highspy.kHighsInf), rhs)

    def maximise(self, c_w: np.ndarray) -> np.ndarray | None:
        """The ``z`` of argmax c_w w, or None when HiGHS finds no optimum."""
        n = self.n_z + self.n_w
        cost = np.r_[np.zeros(self.n_z), -np.asarray(c_w, float)]
        self.h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)
        with kernels.timed("solves"):
            self.h.run()
        self.solves += 1
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return np.asarray(self.h.getSolution().col_value, dtype=float)[: self.n_z]


class Cuts:
    """Linearised network rows ``a w <= cap - margin - g(d) + a w_d`` in the LP.

    Loading rows are kept from every linearisation point: branch current magnitude is convex in
    the injections to first order, so each linearisation is a valid outer cut (Kelley) and
    keeping them stops oscillation where a flow reverses. A voltage row is replaced by its
    latest linearisation (voltages are nearly linear; the latest point is the most accurate
    one near where the LP is working), corrected along the step from the baseline so that it
    also passes through the baseline's value (a secant). A constraint's margin grows with every
    AC violation of it (:data:`~.linearised.FLEXIBILITY_AREA`), so that the next LP point
    lands inside despite second-order errors.
    """

    def __init__(self, caps: Caps, lp: SupportLp, base: PowerFlowDetail) -> None:
        self.caps = caps
        self.lp = lp
        self.base = base
        self.failures: dict[Key, int] = {}
        self.voltage_row: dict[Key, int] = {}
        self.row_key: dict[int, Key] = {}

    def add(
        self,
        d: PowerFlowDetail,
        w_d: np.ndarray,
        keys: list[Key],
        cols: np.ndarray,
        violated: bool,
    ) -> None:
        """Rows of ``keys`` (sensitivities ``cols`` on the bus variables) linearised at ``d``.

        ``w_d`` are the bus injection changes of ``d`` relative to the baseline; ``violated``
        says that ``d`` violated these constraints (their margins grow).
        """
        if not keys:
            return
        cols = np.array(cols, dtype=float)
        first = self.lp.h.getNumRow()
        w_norm2 = float(w_d @ w_d)
        for r, key in enumerate(keys):
            kind, pos = key
            if violated:
                self.failures[key] = self.failures.get(key, 0) + 1
            if kind in ("vmax", "vmin") and w_norm2 > 0:
                g, g0 = float(values(d, kind)[pos]), float(values(self.base, kind)[pos])
                cols[r] += ((g - g0) - float(cols[r] @ w_d)) * w_d / w_norm2
            self.row_key[first + r] = key
            if kind in ("vmax", "vmin"):
                old = self.voltage_row.get(key)
                if old is not None:
                    self.lp.h.changeRowBounds(old, -highspy.kHighsInf, highspy.kHighsInf)
                self.voltage_row[key] = first + r
        scale = np.array([FLEXIBILITY_AREA.margin_scale(self.failures.get(k, 0)) for k in keys])
        rhs = bounds(d, keys, cols, w_d, self.caps, FLEXIBILITY_AREA, scale)
        # The baseline (w = 0) is AC-feasible by construction of the effective limits; a row
        # that excludes it is a linearisation artefact and is relaxed to pass through it.
        self.lp.add_w_rows(cols, np.maximum(rhs, 0.0))

    def binding(self) -> list[Key]:
        """Constraints whose rows are tight at the last LP optimum (worst per kind first)."""
        h = self.lp.h
        value = np.asarray(h.getSolution().row_value, dtype=float)
        upper = np.asarray(h.getLp().row_upper_, dtype=float)
        tight = [
            self.row_key[r]
            for r in sorted(self.row_key)
            if upper[r] < highspy.kHighsInf and value[r] >= upper[r] - BINDING_TOL
        ]
        out: list[Key] = []
        for kind in KINDS:
            out += list(dict.fromkeys(k for k in tight if k[0] == kind))[: FLEXIBILITY_AREA.max_add]
        return out
