"""Tests of the delivery stage's set-points: bids applied to them, and which power flows write
them into the network's tables."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from market_sim.delivery import baseline, deliver
from market_sim.grid.injections import apply_bids
from market_sim.grid.network import DistributionNetwork, load_network
from market_sim.types import DOWN, UP, Limits
from tests.bids import make_bids

STEP = 96 * 170 + 48


@pytest.fixture(scope="module")
def dn() -> DistributionNetwork:
    return load_network("1-MV-rural--2-sw", pv_scale=2.5)


def test_apply_bids_not_finite_mw_as_nan_to_num(dn: DistributionNetwork) -> None:
    """A NaN quantity activates nothing; an infinite one the largest float (nan_to_num)."""
    inj = dn.baseline(STEP)
    index = dn.net.load.index
    bids = make_bids([("load", index[0], UP, np.nan), ("load", index[1], DOWN, np.inf)])
    out = apply_bids(dn, inj, bids)
    assert out.p_mw["load"][0] == inj.p_mw["load"][0]
    assert out.p_mw["load"][1] == inj.p_mw["load"][1] + np.finfo(float).max  # consumption up


def test_apply_bids_unknown_table_raises(dn: DistributionNetwork) -> None:
    bids = make_bids([("load", dn.net.load.index[0], UP, 0.1), ("gen", 0, UP, 0.1)])
    with pytest.raises(ValueError, match="unsupported element tables \\['gen'\\]"):
        apply_bids(dn, dn.baseline(STEP), bids)


def test_baseline_leaves_tables_deliver_writes(dn: DistributionNetwork) -> None:
    """The baseline's power flow leaves the net's set-points as they were; delivery's writes
    the delivered ones."""
    dso = SimpleNamespace(network=dn, limits=Limits())
    point = dn.baseline(STEP)
    before = dn.net.load["p_mw"].to_numpy().copy()
    base = baseline({"dso": dso}, {"dso": point})
    assert base["dso"].power_flow.converged
    np.testing.assert_array_equal(dn.net.load["p_mw"].to_numpy(), before)
    bids = make_bids([("load", dn.net.load.index[0], UP, 0.1)])
    dispatch = {"bid_id": np.array([0]), "mw": np.array([0.1])}
    delivered = deliver({"dso": dso}, {"dso": point}, dispatch, bids)
    np.testing.assert_array_equal(
        dn.net.load["p_mw"].to_numpy(), delivered["dso"].injections.p_mw["load"]
    )
