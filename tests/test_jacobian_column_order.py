"""Factorising a Jacobian with its columns put in the fill-reducing order once per network gives
the very factors that ordering them at every factorisation gives, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from market_sim.grid.adjoint import adjoint_solve, factorise
from market_sim.grid.jacobian import factorised_jacobian, jacobian
from market_sim.grid.network import DistributionNetwork, load_network
from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.types import Limits

LIMITS = Limits()
STEPS = (96 * 170 + 48, 96 * 100 + 52, 96 * 20 + 76)


@pytest.fixture(scope="module", params=["1-MV-rural--2-sw", "1-MV-semiurb--2-sw"])
def dn(request: pytest.FixtureRequest) -> DistributionNetwork:
    return load_network(request.param, pv_scale=2.0)


def test_ordered_factors_equal_ordering_each_time(dn: DistributionNetwork) -> None:
    for i, step in enumerate(STEPS):  # the first factorisation finds the order, the others use it
        d = run_power_flow_detailed(dn, dn.baseline(step), LIMITS, write=False)
        model, v = d.state.model, d.state.v
        ref = factorise(jacobian(model, v))
        got = factorised_jacobian(model, v)
        assert model.jac_pattern.ordered is not None
        if i:
            assert got[2] is not None  # these networks take the order
        for a, b in zip(got[1], ref[1], strict=True):
            assert np.array_equal(a, b) and a.dtype == b.dtype
        assert np.array_equal(got[0].perm_r, ref[0].perm_r)
        grad = np.random.default_rng(i).normal(size=(ref[0].shape[0], 4))
        rows = np.arange(ref[0].shape[0])[::2]
        assert np.array_equal(adjoint_solve(got, grad, rows), adjoint_solve(ref, grad, rows))
