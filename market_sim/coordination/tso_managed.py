"""A. TSO-managed model (the paper's Fig. 1).

1a. DER -> TSO: bids.  1b. DSO -> TSO: real-time operational data of its network.
2a. The TSO validates centrally, on every DSO network, and clears TER and DER together.
2b. TSO -> DER: dispatch. The DSO validates nothing.
"""

from __future__ import annotations

from collections.abc import Generator

import pandas as pd

from agents.dso import validated_bids
from market_sim.coordination.base import (
    CoordinationModel,
    PeriodOutcome,
    Step,
    concat,
)
from market_sim.messages import Kind
from market_sim.schedule import PeriodClock


class TsoManaged(CoordinationModel):
    name = "tso_managed"
    steps = (
        Step("1a", "aggregator", "tso", Kind.BIDS, "DER send their bids to the TSO"),
        Step("1b", "dso", "tso", Kind.OPERATIONAL_DATA, "DSOs send real-time operational data"),
        Step("2a", "tso", "tso", Kind.VALIDATION, "TSO validates on every DSO network, clears"),
        Step("2b", "tso", "aggregator", Kind.DISPATCH, "TSO sends dispatch to DER"),
    )

    def run(self, clock: PeriodClock, bids: pd.DataFrame) -> Generator:
        sim = self.sim
        self.send(
            clock,
            "1a",
            {(a.name, "tso"): a.bid_book(bids) for a in sim.aggregators.values()},
            clock.bids_gate,
        )
        self.send(
            clock,
            "1b",
            {(d.name, "tso"): d.operational_data() for d in sim.dsos.values()},
            clock.bids_gate,
        )
        yield sim.post.wait_until(clock.bids_gate)
        received = concat(list(self.inbox("tso", Kind.BIDS).values()), bids)
        state = self.inbox("tso", Kind.OPERATIONAL_DATA)

        reported = {n: d for n, d in sim.dsos.items() if n in state}
        results = sim.timed(
            "tso", "validation", sim.tso.validate_centrally, received, state, reported
        )
        validation = concat(
            [self.validation_rows("tso", r, n) for n, r in results.items()],
            PeriodOutcome().validation,
        )
        self.send(clock, "2a", {("tso", "tso"): validation})
        usable = concat(
            [validated_bids(received[received.dso == n], r) for n, r in results.items()], bids
        )
        clearing, dispatch = self.clear_bids(usable)

        delivered = yield from self.dispatch_to_der(clock, "2b", {"tso": dispatch}, received)
        return PeriodOutcome(validation, clearing, delivered)
