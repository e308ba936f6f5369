"""C. DSO-managed model without a distribution-level market (the paper's Fig. 3).

1. DER -> DSO: bids.  2a. The DSO validates and aggregates them.
2b. DSO -> TSO: aggregated offers at the interface (a price-quantity curve).
3. The TSO dispatches TER and aggregated offers; TSO -> DSO: aggregated dispatch.
4. DSO -> DER: individual dispatch that meets the aggregate at least cost.
"""

from __future__ import annotations

from collections.abc import Generator

import pandas as pd

from agents.dso import validated_bids
from market_sim.coordination.base import (
    CoordinationModel,
    PeriodOutcome,
    Step,
    accepted_der,
    as_dispatch,
)
from market_sim.markets.aggregation import empty_offers
from market_sim.messages import Kind
from market_sim.schedule import PeriodClock

#: Aggregated offer ids of DSO number k start at k * OFFER_ID_BLOCK.
OFFER_ID_BLOCK = 1_000_000


class DsoManaged(CoordinationModel):
    name = "dso_managed"
    steps = (
        Step("1", "aggregator", "dso", Kind.BIDS, "DER send their bids to their DSO"),
        Step("2a", "dso", "dso", Kind.VALIDATION, "each DSO validates and aggregates"),
        Step("2b", "dso", "tso", Kind.AGGREGATED_OFFER, "DSOs send aggregated offers"),
        Step("3", "tso", "dso", Kind.AGGREGATED_DISPATCH, "TSO clears, sends aggregated dispatch"),
        Step("4", "dso", "aggregator", Kind.DISPATCH, "DSOs dispatch individual DER"),
    )

    def run(self, clock: PeriodClock, bids: pd.DataFrame) -> Generator:
        sim = self.sim
        books = {}
        for agg in sim.aggregators.values():
            book = agg.bid_book(bids)
            for name in agg.dsos:
                books[(agg.name, name)] = book[book.dso == name].reset_index(drop=True)
        self.send(clock, "1", books, clock.bids_gate)
        yield sim.post.wait_until(clock.bids_gate)

        rows, validated, offers = [], {}, {}
        for k, (name, dso) in enumerate(sim.dsos.items()):
            received = pd.concat(
                [bids.iloc[0:0], *self.inbox(name, Kind.BIDS).values()], ignore_index=True
            )
            result = sim.timed(name, "validation", dso.validate, received)
            rows.append(self.validation_rows(name, result))
            validated[name] = validated_bids(received, result)
            offers[(name, "tso")] = dso.aggregated_offer(validated[name], k * OFFER_ID_BLOCK)
        validation = pd.concat([PeriodOutcome().validation, *rows], ignore_index=True)
        self.send(clock, "2a", {(n, n): r for n, r in zip(sim.dsos, rows, strict=True)})
        self.send(clock, "2b", offers, clock.validation_gate)
        yield sim.post.wait_until(clock.validation_gate)

        curves = self.inbox("tso", Kind.AGGREGATED_OFFER)
        clearing = self.clear_and_record(
            pd.concat([empty_offers(), *curves.values()], ignore_index=True)
        )
        accepted = accepted_der(clearing)
        yield self.send(
            clock,
            "3",
            {("tso", n): accepted[accepted.offer_id.isin(c.offer_id)] for n, c in curves.items()},
            clock.dispatch_gate,
        )
        individual = {n: as_dispatch([], []) for n in sim.dsos}
        for name, dso in sim.dsos.items():
            for aggregate in self.inbox(name, Kind.AGGREGATED_DISPATCH).values():
                individual[name] = sim.timed(
                    name,
                    "disaggregation",
                    dso.disaggregate,
                    validated[name],
                    offers[(name, "tso")],
                    aggregate,
                )
        delivered = yield from self.dispatch_to_der(clock, "4", individual, bids)
        return PeriodOutcome(validation, clearing, delivered)
