"""A power flow depends on its inputs only: the same injections give the same result, bit for
bit, whatever was solved before on the same network (issue 8, item 9: after a linear_opf
validation of a heavily loaded DSO the delivery power flow of the same injections failed to
converge, because a diverged trial point left lightsim2grid's solver in a failing state)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from market_sim.grid.network import load_network, profile_step
from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.grid.validation import validate
from market_sim.types import Limits
from tests.bids import random_bids

LIMITS = Limits(0.95, 1.05, 100.0)


@pytest.fixture(scope="module")
def loaded():
    """semiurb with twenty times its load: validations try points that do not converge."""
    return load_network("1-MV-semiurb--2-sw", pv_scale=1.6, storage_scale=2.0, load_scale=20.0)


def _same(a, b) -> bool:
    return a.result == b.result and all(
        np.array_equal(x, y, equal_nan=True)
        for x, y in (
            (a.vm_pu, b.vm_pu),
            (a.line_loading_percent, b.line_loading_percent),
            (a.trafo_loading_percent, b.trafo_loading_percent),
        )
    )


@pytest.mark.parametrize(
    "method, periods",
    [("iterative_pf", (0, 40, 48, 76)), ("linear_opf", (0, 40, 48, 76)), ("ac_opf", (48,))],
)
def test_delivery_power_flow_is_the_same_after_any_validation(loaded, method, periods):
    for period in periods:
        injections = loaded.baseline(profile_step(dt.date(2016, 6, 21), period, 15))
        before = run_power_flow_detailed(loaded, injections, LIMITS, write=False)
        bids = random_bids(loaded, injections, np.random.default_rng(period), 1.0)
        validate(loaded, injections, bids, LIMITS, method=method)
        after = run_power_flow_detailed(loaded, injections, LIMITS, write=False)
        assert before.result.converged, period
        assert _same(before, after), (method, period)
