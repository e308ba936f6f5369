"""B'. Hybrid-managed model with pre-validation (Section II-B, refs 28, 31-33).

"DER send all bids first to the DSO who validates them so DER can directly send validated bids
to the TSO." The paper numbers no steps for this variant; the labels map it onto Fig. 2:

0.  (independent DSOs only) asset owner -> iDSO: the network status, as in the hybrid model.
1.  DER -> DSO: bids (replaces the hybrid model's steps 1 and 2: the DSO sees them first).
3a. The DSO validates (as in the hybrid model).
3b. DSO -> DER: validated bids (Fig. 2's step 3b in blue), each at its validated MW; with a
    DSO market, DSO -> TSO: what the DSO buys for its own needs (its request of step 3b red).
3c. DER -> TSO: the validated bids, as their DSO returned them (the variant's new step).
4.  The TSO dispatches TER and the validated DER without distribution constraints; TSO -> DER.

So the TSO never sees a bid above what its DSO validated, and the DSO never reports validated
bids to the TSO itself: the DER carry them.
"""

from __future__ import annotations

from collections.abc import Generator

from market_sim.columns import rows_where
from market_sim.coordination.base import NETWORK_STATUS_STEP
from market_sim.coordination.hybrid import Hybrid
from market_sim.coordination.period import (
    PeriodContext,
    PeriodInputs,
    PeriodOutcome,
    Step,
    concat,
)
from market_sim.messages import Kind


class PreValidation(Hybrid):
    name = "hybrid+pre_validation"
    steps = (
        NETWORK_STATUS_STEP,
        Step("1", "aggregator", "dso", Kind.BIDS, "DER send their bids to their DSO first"),
        Step("3a", "dso", "dso", Kind.VALIDATION, "each DSO validates the bids"),
        Step("3b", "dso", "aggregator", Kind.VALIDATED_BIDS, "DSOs return validated bids to DER"),
        Step("3b", "dso", "tso", Kind.DSO_REQUEST, "and, with a DSO market, send their requests"),
        Step("3c", "aggregator", "tso", Kind.VALIDATED_BIDS, "DER send validated bids to the TSO"),
        Step("4", "tso", "aggregator", Kind.DISPATCH, "TSO clears and sends dispatch to DER"),
    )

    def run(self, ctx: PeriodContext, inputs: PeriodInputs) -> Generator:
        inputs = yield from self.exchange_status(ctx, inputs)
        clock, bids = ctx.clock, inputs.bids
        ctx.send(self.step("1"), self.books_by_dso(bids), clock.bids_gate)
        yield ctx.wait_until(clock.bids_gate)

        validation, validated, points = self.validate(ctx, inputs, Kind.BIDS)
        requests = self.dso_requests(ctx, validated, points)
        returned = ctx.send(
            self.step("3b", Kind.VALIDATED_BIDS), self._returned(validated), clock.validation_gate
        )
        to_tso = {(n, "tso"): r.bought for n, r in requests.items() if not r.bought.empty}
        if to_tso:  # a DSO with nothing to buy sends no request
            ctx.send(self.step("3b", Kind.DSO_REQUEST), to_tso, clock.validation_gate)
        yield returned
        aggregators = self.parties.aggregators.values()
        books = {
            (agg.name, "tso"): agg.validated_book(
                list(ctx.inbox(agg.name, Kind.VALIDATED_BIDS).values())
            )
            for agg in aggregators
        }
        ctx.send(self.step("3c"), books, clock.validation_gate)
        yield ctx.wait_until(clock.validation_gate)

        usable = concat(ctx.inbox("tso", Kind.VALIDATED_BIDS).values(), bids)
        asked = ctx.inbox("tso", Kind.DSO_REQUEST)
        arrived = {n: r for n, r in requests.items() if n in asked}
        clearing, dispatch = self.clear_validated(ctx, inputs.plan, usable, arrived)
        delivered = yield from self.dispatch_to_der(ctx, "4", {"tso": dispatch}, usable)
        return PeriodOutcome(validation, clearing, delivered, points, ctx.records)

    def _returned(self, validated: dict) -> dict:
        """Step 3b: each DSO's validated bids, one message to each aggregator it covers."""
        return {
            (name, agg.name): rows_where(table, "aggregator", agg.name)
            for name, table in validated.items()
            for agg in self.parties.aggregators.values()
            if name in agg.dsos
        }
