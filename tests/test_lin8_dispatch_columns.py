"""A dispatch split into the aggregators' commands from its columns gives the commands its table
gives: same values, same dtypes, bit for bit (the TSO-managed model hands on columns)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_sim.coordination.base import Located
from market_sim.coordination.period import as_dispatch, as_dispatch_columns


def _bids(n: int, seed: int) -> pd.DataFrame:
    """A bid book's columns that Located reads: ids, aggregator, DSO and direction."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "bid_id": rng.permutation(10 * n)[:n] + 100,
            "aggregator": rng.choice(np.array(["agg_a", "agg_b"], dtype=object), n),
            "dso": rng.choice(np.array(["rural", "urban"], dtype=object), n),
            "direction": pd.arrays.StringArray(rng.choice(np.array(["up", "down"], object), n)),
        }
    )


@pytest.mark.parametrize("n", [0, 1, 12])
def test_commands_from_columns_are_those_from_the_table(n: int) -> None:
    """Some dispatched bids are not in the book, some dispatch no MW (both dropped)."""
    bids = _bids(max(n, 1), n)
    rng = np.random.default_rng(n + 7)
    ids = np.r_[rng.choice(bids.bid_id.to_numpy(), n, replace=False), [1]][: n + (n > 0)]
    mw = np.where(rng.random(len(ids)) < 0.3, 0.0, rng.random(len(ids)))
    by_table, by_columns = (
        Located(as_dispatch(ids, mw), bids),
        Located(as_dispatch_columns(ids, mw), bids),
    )
    for aggregator in ("agg_a", "agg_b"):
        a = pd.DataFrame(by_table.command_columns(aggregator))
        b = pd.DataFrame(by_columns.command_columns(aggregator))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert list(a.dtypes) == list(b.dtypes)
