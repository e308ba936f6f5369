"""``iterative_pf._cuts`` (one matrix over the violations) gives bit for bit the cuts of the
violation-by-violation loop it replaced, in both fairness policies."""

from __future__ import annotations

import numpy as np
import pytest

from market_sim.grid.constraints import MIN_MW, Violation
from market_sim.grid.iterative_pf import (
    ABS_MARGIN,
    CUT_MARGIN,
    MAX_CUT_FRACTION,
    MIN_CUT_FRACTION,
    _cuts,
    _distribute,
)


def _loop_cuts(viol, sens, x, rounds, explained_only, equal_share):
    """The cuts one violation at a time, as ``_cuts`` computed them before."""
    cut = np.zeros_like(x)
    cut_by = np.full(len(x), -1, dtype=np.int64)
    harms = np.where(sens > 0, sens * x, 0.0)
    least, most = MIN_CUT_FRACTION * x, np.where(x > 10 * MIN_MW, MAX_CUT_FRACTION * x, x)
    for k, v in enumerate(viol):
        s, harm = sens[k], harms[k]
        total = harm.sum()
        if total <= 0 or (explained_only and total < 0.5 * v.overshoot):
            continue
        need = v.overshoot * (1.0 + CUT_MARGIN * rounds) + ABS_MARGIN[v.kind] * (1 + rounds)
        c = _distribute(s, x, need, equal_share)
        relevant = (harm > 0) if equal_share else (harm >= 0.01 * harm.max())
        if equal_share:
            share = max(float(np.max(c[relevant] / x[relevant])), MIN_CUT_FRACTION)
            c = np.where(relevant, share * x, 0.0)
        c = np.where(relevant, np.maximum(c, least), c)
        c = np.minimum(c, most)
        better = c > cut
        cut_by[better] = k
        cut = np.maximum(cut, c)
    return cut, cut_by


@pytest.mark.parametrize("equal_share", [False, True])
@pytest.mark.parametrize("explained_only", [False, True])
def test_cuts_match_the_loop(equal_share: bool, explained_only: bool) -> None:
    rng = np.random.default_rng(7)
    kinds = list(ABS_MARGIN)
    for _ in range(300):
        n_viol, n_bids = int(rng.integers(1, 12)), int(rng.integers(1, 40))
        sens = rng.normal(size=(n_viol, n_bids)) * rng.choice([1e-4, 1e-2, 1.0], n_viol)[:, None]
        sens[rng.random(sens.shape) < 0.3] = 0.0
        x = rng.random(n_bids) * rng.choice([1e-4, 0.1, 2.0], n_bids)
        x[rng.random(n_bids) < 0.2] = 0.0
        viol = [
            Violation(kinds[k % 4], k, float(rng.random() * 0.05), f"c{k}") for k in range(n_viol)
        ]
        rounds = int(rng.integers(0, 5))
        got = _cuts(viol, sens, x, rounds, explained_only, equal_share)
        want = _loop_cuts(viol, sens, x, rounds, explained_only, equal_share)
        assert got[0].tobytes() == want[0].tobytes()
        assert np.array_equal(got[1], want[1])
