"""B. TSO-DSO hybrid-managed model (the paper's Fig. 2).

1. DER -> TSO: bids.  2. TSO -> DSO: the DSO is informed of the bids in its network.
3a. The DSO validates.  3b. DSO -> TSO: validated bids.
4. The TSO dispatches TER and validated DER without distribution constraints; TSO -> DER.
"""

from __future__ import annotations

from collections.abc import Generator

import pandas as pd

from market_sim.agents.dso import validated_bids
from market_sim.coordination.base import (
    CoordinationModel,
    PeriodOutcome,
    Step,
    as_dispatch,
    concat,
)
from market_sim.markets.priority import taken
from market_sim.messages import Kind
from market_sim.schedule import PeriodClock


class Hybrid(CoordinationModel):
    name = "hybrid"
    steps = (
        Step("1", "aggregator", "tso", Kind.BIDS, "DER send their bids to the TSO"),
        Step("2", "tso", "dso", Kind.BIDS_INFORMED, "the TSO informs each DSO of its bids"),
        Step("3a", "dso", "dso", Kind.VALIDATION, "each DSO validates the bids"),
        Step("3b", "dso", "tso", Kind.VALIDATED_BIDS, "DSOs send validated bids and requests"),
        Step("4", "tso", "aggregator", Kind.DISPATCH, "TSO clears and sends dispatch to DER"),
    )

    def run(self, clock: PeriodClock, bids: pd.DataFrame) -> Generator:
        sim = self.sim
        self.send(
            clock,
            "1",
            {(a.name, "tso"): a.bid_book(bids) for a in sim.aggregators.values()},
            clock.bids_gate,
        )
        yield sim.post.wait_until(clock.bids_gate)
        received = concat(list(self.inbox("tso", Kind.BIDS).values()), bids)

        yield self.send(
            clock,
            "2",
            {("tso", n): received[received.dso == n].reset_index(drop=True) for n in sim.dsos},
            clock.validation_gate,
        )
        rows, validated = [], {}
        for name, dso in sim.dsos.items():
            informed = concat(list(self.inbox(name, Kind.BIDS_INFORMED).values()), bids)
            result = sim.timed(name, "validation", dso.validate, informed)
            rows.append(self.validation_rows(name, result))
            validated[(name, "tso")] = validated_bids(informed, result)
        validation = concat(rows, PeriodOutcome().validation)
        self.send(clock, "3a", {(n, n): r for n, r in zip(sim.dsos, rows, strict=True)})
        # a DSO that buys for its own needs on the central market sends its request with them
        requests = self.dso_requests({n: v for (n, _), v in validated.items()})
        for (name, tso), table in validated.items():
            request = requests[name].bought if name in requests else as_dispatch([], [])
            validated[(name, tso)] = table.assign(dso_request_mw=taken(request, table.bid_id))
        self.send(clock, "3b", validated, clock.validation_gate)
        yield sim.post.wait_until(clock.validation_gate)

        usable = concat(list(self.inbox("tso", Kind.VALIDATED_BIDS).values()), bids)
        arrived = {n: r for n, r in requests.items() if n in set(usable.dso)}
        clearing, dispatch = self.share(
            usable, arrived, self.clear_bids, tso_cost=sim.tso.cost_with_all
        )

        delivered = yield from self.dispatch_to_der(clock, "4", {"tso": dispatch}, received)
        return PeriodOutcome(validation, clearing, delivered)
