"""Reading a period's tables as numpy columns gives what pandas gives, without its cost."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.columns import distinct, new_frame, numbers, positions, text


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


def test_new_frame_is_the_table_pandas_builds():
    """new_frame gives what ``pd.DataFrame(columns, copy=False)`` gives: values, dtypes,
    index and column labels, for every array type the stages hand on and for no rows."""
    n = 6
    columns = {
        "bid_id": np.arange(n),
        "mw": np.linspace(0.0, 1.0, n),
        "price": np.full(n, np.nan),
        "ok": np.ones(n, dtype=bool),
        "dso": np.array(["rural", "semiurb"] * 3, dtype=object),
        "direction": pd.array(["up", "down", pd.NA] * 2, dtype="string"),
        "element": pd.Categorical(["load", "sgen"] * 3),
    }
    for case in (columns, {c: v[:0] for c, v in columns.items()}, {}):
        expected, got = pd.DataFrame(case, copy=False), new_frame(case)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert type(got.index) is type(expected.index)
        assert got.columns.dtype == expected.columns.dtype
    first, second = new_frame(columns), new_frame(columns)
    first.columns.name = "renamed"  # tables of the same names share labels, not their name
    assert second.columns.name is None


def test_distinct_numbers_are_numpys_unique():
    rng = np.random.default_rng(1)
    for n in (0, 1, 7, 300):
        values = rng.integers(-5, 20, n)
        expected, inverse = np.unique(values, return_inverse=True)
        found, codes = distinct(values)
        assert found.tolist() == expected.tolist() and found.dtype == values.dtype
        np.testing.assert_array_equal(codes, inverse)
