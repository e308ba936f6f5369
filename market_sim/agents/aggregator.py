"""Aggregators bundle the bids of their prosumers and hand dispatch back to them."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd

from market_sim.markets.columns import rows_where
from market_sim.markets.group_sum import group_sum
from market_sim.types import empty_bids


class Aggregator(mesa.Agent):
    """A portfolio of prosumers, possibly in several DSO areas.

    Each bid keeps its location (DSO, element, bus): validation needs it.
    """

    def __init__(self, model: mesa.Model, name: str, dsos: list[str]) -> None:
        super().__init__(model)
        self.name = name
        self.dsos = dsos

    def bid_book(self, population_bids: pd.DataFrame) -> pd.DataFrame:
        """The bids of this aggregator's prosumers: one table, sent as one message."""
        return rows_where(population_bids, "aggregator", self.name)

    def validated_book(self, tables: list[pd.DataFrame]) -> pd.DataFrame:
        """What it offers the TSO after pre-validation: the bids its DSOs returned, each at
        the MW its DSO validated (bids validated to zero are not among them)."""
        frames = [t for t in tables if len(t)]
        return pd.concat(frames, ignore_index=True) if frames else empty_bids()

    def receive_dispatch(self, tables: list[pd.DataFrame]) -> pd.DataFrame:
        """Collect the period's dispatch commands (possibly from TSO and DSO) for delivery."""
        return collect_dispatch(tables)


def collect_dispatch(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The dispatch commands that reached whoever operates some DER, as one table.

    One row per bid and buyer: a DER can serve the TSO and its DSO in the same period.
    """
    frames = [t for t in tables if len(t)]
    if not frames:
        return pd.DataFrame(
            {
                "bid_id": pd.Series(dtype="int64"),
                "buyer": pd.Series(dtype=object),
                "mw": pd.Series(dtype=float),
            }
        )
    bid_id = np.concatenate([t.bid_id.to_numpy(np.int64) for t in frames])
    buyer = np.concatenate([t.buyer.to_numpy(object) for t in frames])
    mw = np.concatenate([t.mw.to_numpy(float) for t in frames])
    # summed on an integer code that sorts as (bid_id, buyer) does: the sum of a groupby on
    # the two columns (compensated, in row order), at a fraction of its cost
    buyers, buyer_code = np.unique(buyer, return_inverse=True)
    code, summed = group_sum(bid_id * len(buyers) + buyer_code, mw)
    columns = {"bid_id": code // len(buyers), "buyer": buyers[code % len(buyers)], "mw": summed}
    return pd.DataFrame(columns, copy=False)  # new arrays: pandas' copy would double the cost
