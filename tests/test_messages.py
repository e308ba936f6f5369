"""A message's byte count, computed without writing the Arrow stream, is the stream's size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_sim.messages import _REST_BYTES, payload_bytes, stream_bytes

TEXT = ["up", "down", "", "gen 3", "Übertrager ä", "端子", "x" * 40]


def _column(kind: str, n: int, rng: np.random.Generator) -> object:
    """A column of ``n`` values of one kind a payload may hold."""
    nulls = rng.random(n) < 0.3
    if kind == "int64":
        return rng.integers(-1000, 1000, n)
    if kind == "int8":
        return rng.integers(-100, 100, n).astype(np.int8)
    if kind == "uint32":
        return rng.integers(0, 1000, n).astype(np.uint32)
    if kind == "float64":
        return np.where(nulls, np.nan, rng.normal(size=n))
    if kind == "float32":
        return rng.normal(size=n).astype(np.float32)
    if kind == "bool":
        return rng.random(n) < 0.5
    text = [TEXT[i] for i in rng.integers(0, len(TEXT), n)]
    if kind == "object_str":
        return np.array(text, dtype=object)
    if kind == "object_str_none":
        values = [None if null else t for null, t in zip(nulls, text, strict=True)]
        return np.array(values, dtype=object)
    if kind == "object_none":
        return np.array([None] * n, dtype=object)
    if kind == "string":
        values = [pd.NA if null else t for null, t in zip(nulls, text, strict=True)]
        return pd.array(values, dtype="string")
    if kind == "Int64":
        values = [pd.NA if null else i for null, i in zip(nulls, range(n), strict=True)]
        return pd.array(values, dtype="Int64")
    if kind == "category":
        return pd.Categorical(text)
    if kind == "datetime":
        return pd.date_range("2026-01-01", periods=n, freq="15min", tz="UTC")
    raise ValueError(kind)


KINDS = (
    "int64",
    "int8",
    "uint32",
    "float64",
    "float32",
    "bool",
    "object_str",
    "object_str_none",
    "object_none",
    "string",
    "Int64",
    "category",
    "datetime",
)


@settings(max_examples=300, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6),
    n=st.one_of(st.integers(0, 9), st.integers(0, 700)),
    seed=st.integers(0, 2**32 - 1),
)
def test_payload_bytes_is_the_stream_size(kinds: list[str], n: int, seed: int) -> None:
    """Any mix of column kinds and any length (0 rows, bitmaps and padding around 8 and 64
    bytes), the schema part measured (first call) or taken from the cache (second)."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({f"c{i}_{k}": _column(k, n, rng) for i, k in enumerate(kinds)})
    expected = stream_bytes(table)
    assert payload_bytes(table) == expected
    assert payload_bytes(table) == expected


def test_the_rest_is_shared_across_lengths_nulls_and_text() -> None:
    """One column set at many lengths, with and without nulls, text of other lengths and
    scripts: the cached rest of the stream holds for all of them (the body is counted)."""
    rng = np.random.default_rng(0)
    _REST_BYTES.clear()
    for n in (1, 7, 8, 9, 63, 64, 65, 500, 3):
        mw = rng.random(n)
        mw[rng.random(n) < 0.5] = np.nan
        table = pd.DataFrame(
            {
                "bid_id": rng.integers(0, 10**6, n),
                "mw": mw,
                "buyer": np.array([TEXT[i] for i in rng.integers(0, len(TEXT), n)], dtype=object),
                "direction": pd.array(["up"] * n, dtype="string"),
            }
        )
        assert payload_bytes(table) == stream_bytes(table)
    assert len(_REST_BYTES) == 1


def test_a_categorical_column_shares_the_cached_part_per_dictionary() -> None:
    """A network state's categorical column (the same categories every period) is counted
    from the cache at any length and values; no rows, or other categories, are measured anew."""
    rng = np.random.default_rng(1)
    categories = ["bus", "line", "load", "sgen", "trafo"]
    _REST_BYTES.clear()
    for n in (1, 9, 64, 65, 300):
        values = [categories[i] for i in rng.integers(0, 3, n)]  # some categories unused
        element = pd.Categorical(values, categories=categories)
        table = pd.DataFrame({"element": element, "p_mw": rng.random(n)})
        assert payload_bytes(table) == stream_bytes(table)
    assert len(_REST_BYTES) == 1
    empty = pd.DataFrame({"element": pd.Categorical([], categories=categories), "p_mw": []})
    assert payload_bytes(empty) == stream_bytes(empty)
    other = pd.DataFrame({"element": pd.Categorical(["bus", None]), "p_mw": [1.0, 2.0]})
    assert payload_bytes(other) == stream_bytes(other)
    assert len(_REST_BYTES) == 3


@pytest.mark.parametrize(
    "table",
    [
        pd.DataFrame(),
        pd.DataFrame(index=range(5)),
        pd.DataFrame({"a": pd.Series(dtype="int64"), "b": pd.Series(dtype="string")}),
        pd.DataFrame({"a": pd.Series(dtype=object)}),
        pd.DataFrame({"a": [1, 2, 3]}, index=[10, 20, 30]),
        pd.DataFrame({1: [1.5, 2.5], "1": [3, 4]}),
    ],
    ids=["no columns", "rows no columns", "empty typed", "empty object", "index", "names"],
)
def test_payload_bytes_of_edge_tables(table: pd.DataFrame) -> None:
    assert payload_bytes(table) == stream_bytes(table)


def test_frame_attributes_count() -> None:
    """``attrs`` are written into the schema's pandas metadata: they change the size."""
    table = pd.DataFrame({"a": [1, 2]})
    with_attrs = table.copy()
    with_attrs.attrs["source"] = "a long description of where the table came from"
    assert payload_bytes(with_attrs) == stream_bytes(with_attrs) > payload_bytes(table)
