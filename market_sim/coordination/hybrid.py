"""B. TSO-DSO hybrid-managed model (the paper's Fig. 2).

0. (independent DSOs only) asset owner -> iDSO: the network status of the period.
1. DER -> TSO: bids.  2. TSO -> DSO: the DSO is informed of the bids in its network.
3a. The DSO validates.  3b. DSO -> TSO: validated bids.
4. The TSO dispatches TER and validated DER without distribution constraints; TSO -> DER.
"""

from __future__ import annotations

from collections.abc import Generator

import pandas as pd

from market_sim.agents.dso import validated_bids
from market_sim.columns import rows_where, text
from market_sim.coordination.base import NETWORK_STATUS_STEP, CoordinationModel
from market_sim.coordination.period import (
    PeriodContext,
    PeriodInputs,
    PeriodOutcome,
    Step,
    concat,
    no_dispatch,
    validation_table,
)
from market_sim.markets.local_market import LocalMarketResult
from market_sim.markets.priority import taken
from market_sim.markets.tso_markets import TsoPlan
from market_sim.messages import Kind


class Hybrid(CoordinationModel):
    name = "hybrid"
    steps = (
        NETWORK_STATUS_STEP,
        Step("1", "aggregator", "tso", Kind.BIDS, "DER send their bids to the TSO"),
        Step("2", "tso", "dso", Kind.BIDS_INFORMED, "the TSO informs each DSO of its bids"),
        Step("3a", "dso", "dso", Kind.VALIDATION, "each DSO validates the bids"),
        Step("3b", "dso", "tso", Kind.VALIDATED_BIDS, "DSOs send validated bids and requests"),
        Step("4", "tso", "aggregator", Kind.DISPATCH, "TSO clears and sends dispatch to DER"),
    )

    def run(self, ctx: PeriodContext, inputs: PeriodInputs) -> Generator:
        inputs = yield from self.exchange_status(ctx, inputs)
        clock, bids, dsos = ctx.clock, inputs.bids, self.parties.dsos
        books = {(a.name, "tso"): a.bid_columns(bids) for a in self.parties.aggregators.values()}
        ctx.send(self.step("1"), books, clock.bids_gate)
        yield ctx.wait_until(clock.bids_gate)
        received = concat(ctx.inbox("tso", Kind.BIDS).values(), bids)

        informed = {("tso", n): rows_where(received, "dso", n) for n in dsos}
        yield ctx.send(self.step("2"), informed, clock.validation_gate)
        validation, validated, points = self.validate(ctx, inputs, Kind.BIDS_INFORMED)
        # a DSO that buys for its own needs on the central market sends its request with them
        requests = self.dso_requests(ctx, validated, points)
        to_tso = {}
        for name, table in validated.items():
            request = requests[name].bought if name in requests else no_dispatch()
            sent = table.copy(deep=False)  # a new frame on the same columns: assign copies them
            sent["dso_request_mw"] = taken(request, table.bid_id)
            to_tso[(name, "tso")] = sent
        ctx.send(self.step("3b"), to_tso, clock.validation_gate)
        yield ctx.wait_until(clock.validation_gate)

        usable = concat(ctx.inbox("tso", Kind.VALIDATED_BIDS).values(), bids)
        present = set(text(usable, "dso"))  # once: iterating a pandas column costs per value
        arrived = {n: r for n, r in requests.items() if n in present}
        clearing, dispatch = self.clear_validated(ctx, inputs.plan, usable, arrived)
        delivered = yield from self.dispatch_to_der(ctx, "4", {"tso": dispatch}, received)
        return PeriodOutcome(validation, clearing, delivered, points, ctx.records)

    def clear_validated(
        self,
        ctx: PeriodContext,
        plan: TsoPlan,
        usable: pd.DataFrame,
        requests: dict[str, LocalMarketResult],
    ) -> tuple:
        """Step 4: the TSO clears TER and the validated bids that reached it, sharing them
        with the DSOs' requests by the priority rule. Returns the clearing and the dispatch."""
        tso = self.parties.tso
        return self.share(
            ctx,
            plan,
            usable,
            requests,
            lambda b: self.clear_bids(ctx, plan, b),
            tso_cost=lambda b: tso.cost_with_all(plan, b),
        )

    def validate(self, ctx: PeriodContext, inputs: PeriodInputs, kind: Kind) -> tuple:
        """Step 3a: each DSO validates the bids of ``kind`` that reached it and records its
        validation (a message to itself). Returns the validation table, each DSO's validated
        bids (at their validated MW) and the operating point it validated at."""
        rows, validated, points = [], {}, {}
        for name, dso in self.parties.dsos.items():
            mine = concat(ctx.inbox(name, kind).values(), inputs.bids)
            forecast = inputs.forecasts[name]
            result = ctx.timed(name, "validation", dso.validate, mine, forecast)
            points[name] = dso.operating_point(forecast, result)
            rows.append(self.validation_rows(ctx, name, result, name))
            validated[name] = validated_bids(mine, result)
        ctx.send(self.step("3a"), {(n, n): r for n, r in zip(self.parties.dsos, rows, strict=True)})
        return validation_table(zip(self.parties.dsos, rows, strict=True)), validated, points
