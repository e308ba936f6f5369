"""Transposed solves with the power-flow Jacobian: one LU factorisation, many right-hand sides.

Every sensitivity of a constraint to the injections is one adjoint solve ``J^T lambda = dg/dx``
(:mod:`.sensitivities`). A network's Jacobians share one sparsity pattern, so their LU
factors are computed on one fixed plan (:class:`StaticLU`: the fill-reducing order and the
fill of L and U found once, then numbers only, in numba); SuperLU factorises where the plan's
pivots are too small. The transposed triangular solves run here over the factors, with every
right-hand side in the inner loop (numba), because SuperLU's own transposed solve is slow on
radial networks (see :func:`adjoint_solve`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

try:  # numba is optional at import time (see market_sim.logs); SuperLU's solve is the fallback
    import numba
except ImportError:  # pragma: no cover
    numba = None

#: A pivot of the plan smaller than this share of its column's largest entry (before the
#: elimination) hands the matrix to SuperLU's partial pivoting instead. The quickstart's grids
#: keep every pivot above 1.3 % of its column at their baselines through the year (a point a
#: week): dP/dVa and dQ/dVm dominate their columns.
PIVOT_TOL = 1e-3


def factorise(jac: sp.csc_matrix) -> tuple:
    """SuperLU factors of ``jac`` with the CSC arrays of L and U read out once.

    The columns are ordered by minimum degree on J^T + J, which fills less than the default on
    these (radial, symmetric-pattern) networks and so speeds up the many transposed solves.
    """
    lu = spla.splu(jac, permc_spec="MMD_AT_PLUS_A")
    low, up = lu.L, lu.U
    return lu, (low.indptr, low.indices, low.data, up.indptr, up.indices, up.data), None


class Permutations(NamedTuple):
    """Where :func:`adjoint_solve` reads the factors' permutations (SuperLU's names): column
    ``perm_c[j]`` and row ``perm_r[i]`` of the factored matrix hold column j and row i."""

    perm_c: np.ndarray
    perm_r: np.ndarray


@dataclass(frozen=True)
class StaticLU:
    """LU factors of every matrix of one sparsity pattern on one plan, without pivoting.

    The rows and columns are put in one fill-reducing order (minimum degree on A^T + A, from
    the pattern only) and the diagonal is the pivot: a power-flow Jacobian's diagonal (dP/dVa,
    dQ/dVm of a bus) dominates its column. The fill of L and U then depends on the pattern
    alone, so it is found once (:meth:`of`) and each matrix costs only its numbers (numba,
    :meth:`factorise`): about a seventh of a SuperLU factorisation with its factors read out
    on the quickstart's grids, and less fill (U has L's pattern, transposed). The factors are
    SuperLU's up to rounding (1e-13 relative in the solves) and depend on the matrix only.
    """

    order: np.ndarray  # position j of the factored matrix holds row and column order[j]
    row_of: np.ndarray  # the inverse: row i sits at row_of[i]
    l_ptr: np.ndarray
    l_idx: np.ndarray
    u_ptr: np.ndarray
    u_idx: np.ndarray

    @classmethod
    def of(cls, pattern: sp.csc_matrix) -> StaticLU | None:
        """The plan for matrices of the pattern of ``pattern`` (its numbers are not read),
        or None without numba or where the pattern has an empty diagonal entry."""
        n = pattern.shape[0]
        entries = sp.csc_matrix(
            (np.ones(pattern.nnz), pattern.indices, pattern.indptr), pattern.shape
        )
        if numba is None or not np.all(entries.diagonal() != 0):
            return None
        order = np.argsort(spla.splu(_structural(pattern), permc_spec="MMD_AT_PLUS_A").perm_c)
        permuted = _structural(pattern[order][:, order].tocsc())
        fill = spla.splu(permuted, permc_spec="NATURAL", diag_pivot_thresh=0.0)
        if not np.array_equal(fill.perm_r, np.arange(n)):  # pragma: no cover
            return None
        low, up = fill.L.tocsc(), fill.U.tocsc()
        low.sort_indices()
        up.sort_indices()  # rows ascending: the order the elimination needs
        return cls(order, np.argsort(order), low.indptr, low.indices, up.indptr, up.indices)

    def factorise(self, jac: sp.csc_matrix) -> tuple | None:
        """:func:`factorise`'s factors of ``jac`` (of the plan's pattern) on this plan, or
        None where a pivot is below :data:`PIVOT_TOL` of its column."""
        low, up = np.empty(len(self.l_idx)), np.empty(len(self.u_idx))
        ok = _refactor(jac.indptr, jac.indices, jac.data, self.order, self.row_of,
                       self.l_ptr, self.l_idx, low, self.u_ptr, self.u_idx, up,
                       np.zeros(len(self.order)), PIVOT_TOL)  # fmt: skip
        if not ok:
            return None
        arrays = (self.l_ptr, self.l_idx, low, self.u_ptr, self.u_idx, up)
        return Permutations(np.arange(len(self.order)), self.row_of), arrays, self.order


def _structural(pattern: sp.csc_matrix) -> sp.csc_matrix:
    """``pattern`` with seeded random numbers and a dominant diagonal: its elimination fills
    what any matrix of the pattern can fill (no entry cancels by chance)."""
    out = pattern.copy().tocsc()
    out.data = np.random.default_rng(0).uniform(1.0, 2.0, out.nnz)
    out = (out + sp.identity(out.shape[0], format="csc") * (2.0 * out.shape[0])).tocsc()
    return out


def _refactor_py(a_ptr, a_idx, a_val, order, row_of, l_ptr, l_idx, l_val, u_ptr, u_idx, u_val,
                 x, tol) -> bool:  # fmt: skip
    """Left-looking LU of ``A[order][:, order]`` on the fixed patterns of L (unit lower) and U
    (upper, rows ascending per column), into ``l_val`` and ``u_val``; ``x`` a zero work
    vector. Column j: scatter A's column, subtract each earlier column k of L times U[k, j]
    (ascending k: U[k, j] is final once the columns before k are subtracted), then split
    into U's rows and L's, divided by the pivot. False if a pivot is below ``tol`` of the
    column's largest entry."""
    n = len(order)
    for j in range(n):
        col, largest = order[j], 0.0
        for p in range(a_ptr[col], a_ptr[col + 1]):
            x[row_of[a_idx[p]]] = a_val[p]
            largest = max(largest, abs(a_val[p]))
        for p in range(u_ptr[j], u_ptr[j + 1]):
            k = u_idx[p]
            if k != j:
                ukj = x[k]
                for q in range(l_ptr[k], l_ptr[k + 1]):
                    i = l_idx[q]
                    if i != k:
                        x[i] -= l_val[q] * ukj
        pivot = x[j]
        if not abs(pivot) > tol * largest:
            return False
        for p in range(u_ptr[j], u_ptr[j + 1]):
            u_val[p] = x[u_idx[p]]
            x[u_idx[p]] = 0.0
        for q in range(l_ptr[j], l_ptr[j + 1]):
            i = l_idx[q]
            l_val[q] = 1.0 if i == j else x[i] / pivot
            x[i] = 0.0
    return True


_refactor = numba.njit(cache=True, nogil=True)(_refactor_py) if numba is not None else None


def adjoint_solve(factors: tuple, grad: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of ``J^-T grad`` from :func:`factorise`, all right-hand sides at once.

    SuperLU's own multi-RHS transposed solve spends about 0.8 ms per right-hand side on the
    10k-bus grid (its supernodes are tiny on a radial network, so it runs column by column);
    the same triangular solves over the factors with every right-hand side in the inner loop
    (contiguous rows, one pass over L and U) take about a twentieth of that. With
    ``Pr J Pc = L U``: ``J^T = Pc U^T L^T Pr``, so ``x = Pr^T L^-T U^-T Pc^T grad``.
    """
    lu, arrays, order = factors
    if order is not None:  # J[:, order]^-T grad[order] = J^-T grad
        grad = grad[order]
    if numba is None:  # pragma: no cover
        return lu.solve(grad, trans="T")[rows]
    b = np.empty(grad.shape)
    b[lu.perm_c] = grad  # Pc^T grad
    _solve_lu_transposed(*arrays, b)
    return b[lu.perm_r[rows]]  # Pr^T, only the rows asked for


def _solve_lu_transposed_py(l_ptr, l_idx, l_val, u_ptr, u_idx, u_val, b) -> None:
    """In place ``b <- L^-T U^-T b`` for CSC factors (L unit lower, U upper triangular).

    Column i of U is row i of U^T (forward substitution), column i of L is row i of L^T
    (backward substitution, unit diagonal). Each update of a row of ``b`` runs over all
    right-hand sides, which are contiguous. Fixed loop order: bit-identical results.
    """
    n, k = b.shape
    acc = np.empty(k)
    for i in range(n):
        diag = 1.0
        for c in range(k):
            acc[c] = b[i, c]
        for p in range(u_ptr[i], u_ptr[i + 1]):
            j = u_idx[p]
            if j == i:
                diag = u_val[p]
            else:
                val = u_val[p]
                for c in range(k):
                    acc[c] -= val * b[j, c]
        for c in range(k):
            b[i, c] = acc[c] / diag
    for i in range(n - 1, -1, -1):
        for c in range(k):
            acc[c] = b[i, c]
        for p in range(l_ptr[i], l_ptr[i + 1]):
            j = l_idx[p]
            if j != i:
                val = l_val[p]
                for c in range(k):
                    acc[c] -= val * b[j, c]
        for c in range(k):
            b[i, c] = acc[c]


_solve_lu_transposed = (
    numba.njit(cache=True, nogil=True)(_solve_lu_transposed_py) if numba is not None else None
)
