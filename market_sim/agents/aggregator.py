"""Aggregators bundle the bids of their prosumers and hand dispatch back to them."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd

from market_sim.columns import Columns, columns_where, length, numbers, rows_where, text
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

    def bid_columns(self, population_bids: pd.DataFrame) -> Columns:
        """The columns of :meth:`bid_book`'s table, for a receiver that joins the books it
        receives (the TSO's concatenation of every aggregator's): a table per aggregator cost
        more than the books' message and join."""
        return columns_where(population_bids, "aggregator", self.name)

    def validated_book(self, tables: list[pd.DataFrame]) -> pd.DataFrame:
        """What it offers the TSO after pre-validation: the bids its DSOs returned, each at
        the MW its DSO validated (bids validated to zero are not among them)."""
        frames = [t for t in tables if len(t)]
        return pd.concat(frames, ignore_index=True) if frames else empty_bids()

    def receive_dispatch(self, tables: list[Columns]) -> dict[str, np.ndarray]:
        """Collect the period's dispatch commands (possibly from TSO and DSO; tables or their
        columns) for delivery, as the columns of :func:`collect_dispatch`'s table
        (:func:`dispatch_columns`)."""
        return dispatch_columns(tables)


def collect_dispatch(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The dispatch commands that reached whoever operates some DER, as one table
    (bid_id, buyer, mw: :func:`dispatch_columns`).

    One row per bid and buyer: a DER can serve the TSO and its DSO in the same period.
    """
    return pd.DataFrame(dispatch_columns(tables), copy=False)  # new arrays: no copy needed


def dispatch_columns(tables: list[Columns]) -> dict[str, np.ndarray]:
    """The columns bid_id (int64), buyer (object) and mw (float) of the dispatch commands
    ``tables`` (tables or their columns), one row per bid and buyer (their MW summed), in
    (bid_id, buyer) order: new arrays, so that a reader joins the commands of several
    aggregators without a table each."""
    frames = [t for t in tables if length(t)]
    bid_id = np.concatenate([numbers(t, "bid_id", np.int64) for t in frames] or [_NO_IDS])
    buyer = np.concatenate([text(t, "buyer") for t in frames] or [_NO_BUYERS])
    mw = np.concatenate([numbers(t, "mw") for t in frames] or [_NO_MW])
    # summed on an integer code that sorts as (bid_id, buyer) does: the sum of a groupby on
    # the two columns (compensated, in row order), at a fraction of its cost
    buyers, buyer_code = np.unique(buyer, return_inverse=True)
    code, summed = group_sum(bid_id * len(buyers) + buyer_code, mw)
    return {"bid_id": code // len(buyers), "buyer": buyers[code % len(buyers)], "mw": summed}


_NO_IDS = np.zeros(0, np.int64)
_NO_BUYERS = np.zeros(0, object)
_NO_MW = np.zeros(0)
