"""The engine's joins and column reads give what the pandas calls they replaced give."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.agents.aggregator import collect_dispatch, dispatch_columns
from market_sim.columns import array_of, numbers, text
from market_sim.coordination.base import _joined_dispatch
from market_sim.coordination.period import concat, no_dispatch
from market_sim.types import BID_COLUMNS, typed_frame


def _bids(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """A bid book of ``n`` rows of random values, text with missing values."""
    columns = {
        c: rng.integers(0, 9, n)
        if t == "int64"
        else rng.random(n)
        if t == "float64"
        else rng.choice(np.array(["a", "b", None], dtype=object), n)
        for c, t in BID_COLUMNS.items()
    }
    return typed_frame(columns, BID_COLUMNS)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert list(a.columns) == list(b.columns)
    assert type(a.index) is type(b.index) and a.index.equals(b.index)


def test_concat_joins_tables_as_pd_concat():
    rng = np.random.default_rng(0)
    books = [_bids(5, rng), _bids(7, rng), _bids(3, rng)]
    _same(concat(books, books[0]), pd.concat(books, ignore_index=True))
    dispatch = pd.DataFrame({"bid_id": [1, 2], "mw": [0.5, 1.0], "buyer": ["tso", "d"]})
    _same(concat([dispatch, dispatch], no_dispatch()), pd.concat([dispatch] * 2, ignore_index=True))
    one = pd.DataFrame({"k": pd.Categorical(["a", "b"])})
    two = pd.DataFrame({"k": pd.Categorical(["a", "a"], categories=["a", "b"])})
    _same(concat([one, two], one), pd.concat([one, two], ignore_index=True))


def test_concat_of_other_tables_goes_through_pd_concat():
    """Tables of other dtypes, categories or column orders are aligned as pandas aligns them."""
    rng = np.random.default_rng(1)
    book = _bids(4, rng)
    others = [
        book.astype({"mw": "float32"}),
        book[list(book.columns[::-1])],
    ]
    for other in others:
        _same(concat([book, other], book), pd.concat([book, other], ignore_index=True))
    one = pd.DataFrame({"k": pd.Categorical(["a", "b"])})
    three = pd.DataFrame({"k": pd.Categorical(["a", "c"])})
    _same(concat([one, three], one), pd.concat([one, three], ignore_index=True))


def test_dispatch_columns_join_as_tables_did():
    command = pd.DataFrame(
        {"bid_id": np.array([3, 1, 3]), "mw": [1.0, 2.0, 3.0], "buyer": ["tso", "d", "tso"]}
    )
    empty = pd.DataFrame(
        {
            "bid_id": pd.Series(dtype="int64"),
            "buyer": pd.Series(dtype=object),
            "mw": pd.Series(dtype=float),
        }
    )
    _same(collect_dispatch([]), empty)
    cases = [
        [],
        [dispatch_columns([])],
        [dispatch_columns([command])],
        [dispatch_columns([command]), dispatch_columns([]), dispatch_columns([command[:1]])],
    ]
    for received in cases:
        tables = [pd.DataFrame(columns, copy=False) for columns in received]
        _same(_joined_dispatch(received), concat(tables, no_dispatch()))


def test_column_reads_are_the_frames_values():
    rng = np.random.default_rng(2)
    book = _bids(6, rng)
    assert array_of(book, "dso") is book["dso"].array
    assert np.array_equal(numbers(book, "mw"), book["mw"].to_numpy(float))
    assert numbers(book, "bid_id", np.int64).dtype == np.int64
    values = text(book, "dso")
    expected = book["dso"].to_numpy()
    assert values.dtype == object and all(
        a is b or a == b for a, b in zip(values, expected, strict=True)
    )
    columns = {"mw": np.arange(3.0)}
    assert array_of(columns, "mw") is columns["mw"]
