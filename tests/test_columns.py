"""Reading a period's tables as numpy columns gives what pandas gives, without its cost."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.columns import distinct, numbers, positions, text


def test_positions_are_an_index_lookup():
    rng = np.random.default_rng(0)
    for _ in range(500):
        index = rng.choice(100, int(rng.integers(0, 30)), replace=False) - 50
        keys = rng.integers(-60, 60, int(rng.integers(0, 40)))
        expected = pd.Index(index, dtype=np.int64).get_indexer(keys)
        np.testing.assert_array_equal(positions(index, keys), expected)


def test_positions_of_text_keys():
    index = np.array(["gen 3", "gen 1", "sgen 0"], dtype=object)
    keys = np.array(["sgen 0", "gen 2", "gen 3"], dtype=object)
    assert positions(index, keys).tolist() == [2, -1, 0]


def test_text_and_numbers_read_a_table_or_arrays_alike():
    table = pd.DataFrame(
        {"name": pd.array(["a", None, "b"], dtype="string"), "mw": [1.0, 2.0, 3.0]}
    )
    got = text(table, "name")
    assert got.dtype == object
    assert got[0] == "a" and got[1] is pd.NA and got[2] == "b"
    assert text({"name": np.array(["x"], dtype=object)}, "name").tolist() == ["x"]
    assert numbers(table, "mw").tolist() == [1.0, 2.0, 3.0]
    assert numbers({"id": [1, 2]}, "id", np.int64).dtype == np.int64


def test_distinct_strings_are_numpys_unique():
    rng = np.random.default_rng(1)
    for _ in range(100):
        values = np.array(
            [f"prosumer {i}" for i in rng.integers(0, 40, int(rng.integers(1, 200)))],
            dtype=object,
        )
        expected, inverse = np.unique(values, return_inverse=True)
        found, codes = distinct(values)
        assert found.tolist() == expected.tolist()
        np.testing.assert_array_equal(codes, inverse)
