"""Messages may carry a table's columns instead of the table: their byte count, the join of
the books the TSO receives and the commands an aggregator collects are the table's, bit for
bit; and the wash-trade mask made of flags per device is the one made of sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_sim.agents.aggregator import dispatch_columns
from market_sim.columns import columns_where, rows_where
from market_sim.coordination.period import concat
from market_sim.markets.devices import DISPATCH_TOL_MW, washed_devices
from market_sim.messages import payload_bytes, stream_bytes


def _bids(n: int, seed: int) -> pd.DataFrame:
    """A bid book's columns of the types a bid book has (ids, pandas text, MW)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "bid_id": np.arange(n, dtype=np.int64) * 3,
            "aggregator": pd.array(rng.choice(["agg_a", "agg_b"], n), dtype="string"),
            "direction": pd.array(rng.choice(["up", "down"], n), dtype="string"),
            "buyer": rng.choice(np.array(["tso", "dso"], dtype=object), n),
            "mw": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
        }
    )


@pytest.mark.parametrize("n", [0, 1, 30])
def test_columns_as_payload_count_the_bytes_of_their_table(n: int) -> None:
    bids = _bids(n, n)
    for name in ("agg_a", "agg_b"):
        columns, table = (
            columns_where(bids, "aggregator", name),
            rows_where(bids, "aggregator", name),
        )
        assert payload_bytes(columns) == payload_bytes(table) == stream_bytes(table)


@pytest.mark.parametrize("n", [0, 1, 30])
def test_books_joined_from_columns_are_those_joined_from_tables(n: int) -> None:
    bids = _bids(n, n + 1)
    names = ("agg_a", "agg_b")
    for kept in (names, names[:1], names[1:]):
        tables = [rows_where(bids, "aggregator", name) for name in kept]
        columns = [columns_where(bids, "aggregator", name) for name in kept]
        expected, got = concat(tables, bids), concat(columns, bids)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_commands_collected_from_columns_are_those_from_tables() -> None:
    bids = _bids(40, 3).fillna({"mw": 0.0})
    tables = [rows_where(bids, "aggregator", name) for name in ("agg_a", "agg_b")]
    columns = [columns_where(bids, "aggregator", name) for name in ("agg_a", "agg_b")]
    got, expected = dispatch_columns(columns), dispatch_columns(tables)
    for name, values in expected.items():
        assert got[name].dtype == values.dtype
        np.testing.assert_array_equal(got[name], values)


@pytest.mark.parametrize("seed", range(5))
def test_washed_devices_are_those_used_both_ways(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    device = rng.integers(-1, 20, n)
    is_up = rng.random(n) < 0.5
    mw = np.where(rng.random(n) < 0.4, 0.0, rng.random(n))
    used = (device >= 0) & (mw > DISPATCH_TOL_MW)
    both = set(device[used & is_up]) & set(device[used & ~is_up])
    expected = np.array([d >= 0 and d in both for d in device])
    np.testing.assert_array_equal(washed_devices(device, is_up, mw), expected)
    assert washed_devices(device[:0], is_up[:0], mw[:0]).shape == (0,)
