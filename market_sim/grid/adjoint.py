"""Transposed solves with the power-flow Jacobian: one LU factorisation, many right-hand sides.

Every sensitivity of a constraint to the injections is one adjoint solve ``J^T lambda = dg/dx``
(:mod:`.sensitivities`). SuperLU factorises; the transposed triangular solves run here over
its factors, with every right-hand side in the inner loop (numba), because SuperLU's own
transposed solve is slow on radial networks (see :func:`adjoint_solve`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

try:  # numba is optional at import time (see market_sim.logs); SuperLU's solve is the fallback
    import numba
except ImportError:  # pragma: no cover
    numba = None


def factorise(jac: sp.csc_matrix, order: np.ndarray | None = None) -> tuple:
    """SuperLU factors of ``jac`` with the CSC arrays of L and U read out once.

    The columns are ordered by minimum degree on J^T + J, which fills less than the default on
    these (radial, symmetric-pattern) networks and so speeds up the many transposed solves.
    ``order``: ``jac`` is a Jacobian ``J[:, order]`` whose columns are already in that order
    (:func:`column_order`), so SuperLU keeps them as they are: the same factors without
    ordering again, which is a sixth of a factorisation and depends on the pattern only.
    """
    lu = spla.splu(jac, permc_spec="MMD_AT_PLUS_A" if order is None else "NATURAL")
    low, up = lu.L, lu.U
    return lu, (low.indptr, low.indices, low.data, up.indptr, up.indices, up.data), order


def column_order(jac: sp.csc_matrix, factors: tuple) -> np.ndarray | None:
    """The fill-reducing column order of ``factors`` (:func:`factorise` of ``jac``), or None
    where factorising ``jac[:, order]`` unordered would not give the very same factors."""
    lu = factors[0]
    order = np.argsort(lu.perm_c)  # jac Pc = jac[:, order]
    again = factorise(jac[:, order], order)
    same = np.array_equal(again[0].perm_c, np.arange(len(order))) and all(
        np.array_equal(a, b) for a, b in zip(again[1], factors[1], strict=True)
    )
    return order if same and np.array_equal(again[0].perm_r, lu.perm_r) else None


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
