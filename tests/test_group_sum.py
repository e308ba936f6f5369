"""The compiled group sum is the pandas groupby sum, to the last bit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.markets.group_sum import group_sum, sums_at


def test_group_sum_is_a_pandas_groupby_sum_bit_for_bit():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 80))
        keys = rng.integers(-5, int(rng.integers(1, 25)), n)  # some keys with many rows
        values = rng.normal(size=n) * 10.0 ** rng.integers(-8, 8, n)  # cancellation
        values[rng.random(n) < 0.1] = np.nan
        values[rng.random(n) < 0.1] = -0.0
        values[rng.random(n) < 0.03] = np.inf
        expected = pd.Series(values).groupby(keys).sum()
        distinct, total = group_sum(keys, values)
        assert distinct.tolist() == expected.index.tolist()
        np.testing.assert_array_equal(total, expected.to_numpy())
        assert (np.signbit(total) == np.signbit(expected.to_numpy())).all()  # 0.0, not -0.0


def test_sums_at_looks_up_keys_and_gives_zero_where_absent():
    got = sums_at(np.array([4, 2, 4]), np.array([1.0, 2.0, 0.5]), np.array([4, 3, 2]))
    assert got.tolist() == [1.5, 0.0, 2.0]
    assert sums_at(np.zeros(0, np.int64), np.zeros(0), np.array([1])).tolist() == [0.0]
