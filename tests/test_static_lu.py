"""The Jacobians' LU factors on one plan per network (:class:`~market_sim.grid.adjoint.StaticLU`):
the adjoint solves over them agree with SuperLU's to rounding, depend on the matrix only, and a
pivot too small for the plan hands the matrix to SuperLU."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from market_sim.grid import adjoint
from market_sim.grid.adjoint import Permutations, StaticLU, adjoint_solve, factorise
from market_sim.grid.jacobian import factorised_jacobian, jacobian
from market_sim.grid.network import DistributionNetwork, load_network
from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.types import Limits

LIMITS = Limits()
STEPS = (96 * 170 + 48, 96 * 100 + 52, 96 * 20 + 76)


@pytest.fixture(scope="module", params=["1-MV-rural--2-sw", "1-MV-semiurb--2-sw"])
def dn(request: pytest.FixtureRequest) -> DistributionNetwork:
    return load_network(request.param, pv_scale=2.0)


def _point(dn: DistributionNetwork, step: int):
    d = run_power_flow_detailed(dn, dn.baseline(step), LIMITS, write=False)
    return d.state.model, d.state.v


def test_solves_agree_with_superlu_and_depend_on_the_matrix_only(dn: DistributionNetwork) -> None:
    first = {}
    for i, step in enumerate(STEPS):
        model, v = _point(dn, step)
        got = factorised_jacobian(model, v)
        assert isinstance(got[0], Permutations)  # the plan's factors, not SuperLU's
        jac = jacobian(model, v)
        grad = np.random.default_rng(i).normal(size=(jac.shape[0], 6))
        rows = np.arange(jac.shape[0])[::2]
        ref = spla.splu(jac, permc_spec="MMD_AT_PLUS_A").solve(grad, trans="T")[rows]
        solved = adjoint_solve(got, grad, rows)
        np.testing.assert_allclose(solved, ref, rtol=0, atol=1e-11 * np.abs(ref).max())
        first[step] = solved
    # the factors at a point do not depend on what was factorised before (a new plan)
    model, v = _point(dn, STEPS[0])
    model.jac_pattern.planned = False
    again = factorised_jacobian(model, v)
    grad = np.random.default_rng(0).normal(size=(len(again[1][0]) - 1, 6))
    rows = np.arange(len(again[1][0]) - 1)[::2]
    np.testing.assert_array_equal(adjoint_solve(again, grad, rows), first[STEPS[0]])


def test_the_plan_fills_no_more_than_superlu(dn: DistributionNetwork) -> None:
    model, v = _point(dn, STEPS[0])
    jac = jacobian(model, v)
    plan = StaticLU.of(jac)
    lu = spla.splu(jac, permc_spec="MMD_AT_PLUS_A")
    assert len(plan.l_idx) + len(plan.u_idx) <= lu.L.nnz + lu.U.nnz


def test_a_small_pivot_is_left_to_superlu() -> None:
    """[[eps, 1], [1, eps]]: in either order the plan's first pivot is eps, far below its
    column's 1; partial pivoting swaps the rows. The plan declines and SuperLU's factors
    solve it."""
    eps = 1e-9
    mat = sp.csc_matrix(np.array([[eps, 1.0], [1.0, eps]]))
    plan = StaticLU.of(mat)
    assert plan is not None and plan.factorise(mat) is None
    fine = sp.csc_matrix(np.array([[4.0, 1.0], [1.0, 3.0]]))
    factors = plan.factorise(fine)
    grad = np.array([[1.0], [2.0]])
    expected = np.linalg.solve(fine.toarray().T, grad)
    np.testing.assert_allclose(adjoint_solve(factors, grad, np.arange(2)), expected, rtol=1e-14)
    np.testing.assert_allclose(
        adjoint_solve(factorise(mat), grad, np.arange(2)),
        np.linalg.solve(mat.toarray().T, grad),
        rtol=1e-12,
    )


def test_a_jacobian_with_a_too_small_pivot_is_factorised_by_superlu(
    dn: DistributionNetwork, monkeypatch
) -> None:
    model, v = _point(dn, STEPS[1])
    monkeypatch.setattr(adjoint, "PIVOT_TOL", 10.0)  # no pivot passes
    got = factorised_jacobian(model, v)
    assert not isinstance(got[0], Permutations)
    jac = jacobian(model, v)
    grad = np.random.default_rng(3).normal(size=(jac.shape[0], 2))
    rows = np.arange(jac.shape[0])
    ref = spla.splu(jac, permc_spec="MMD_AT_PLUS_A").solve(grad, trans="T")
    np.testing.assert_allclose(adjoint_solve(got, grad, rows), ref, rtol=1e-9, atol=1e-12)
