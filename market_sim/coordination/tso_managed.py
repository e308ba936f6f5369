"""A. TSO-managed model (the paper's Fig. 1).

1a. DER -> TSO: bids.  1b. DSO -> TSO: real-time operational data of its network.
2a. The TSO validates and clears in one integrated problem: its DC-OPF carries every DSO
    network's constraints, linearised at the reported operating point of the period (the
    DSO's forecast, where the DSOs of the other models validate) as worst cases over the box
    of the dispatch (any part of it may fail to deliver), and its dispatch and the box's
    critical vertices are AC-checked. What it reports as validated per bid is what the same
    max-volume LP as the DSOs' allows on those rows, not what it dispatched.
2b. TSO -> DER: dispatch. The DSO validates nothing.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable

import numpy as np
import pandas as pd

from market_sim.columns import new_frame, numbers, text
from market_sim.coordination.base import CoordinationModel
from market_sim.coordination.period import (
    VALIDATION_COLUMNS,
    PeriodContext,
    PeriodInputs,
    PeriodOutcome,
    Step,
    concat,
    der_dispatch_columns,
    no_validation,
)
from market_sim.markets.central import IntegratedResult, numbered_rows
from market_sim.messages import Kind
from market_sim.types import DirectionStats, ValidationResult


class TsoManaged(CoordinationModel):
    name = "tso_managed"
    steps = (
        Step("1a", "aggregator", "tso", Kind.BIDS, "DER send their bids to the TSO"),
        Step("1b", "dso", "tso", Kind.OPERATIONAL_DATA, "DSOs send real-time operational data"),
        Step("2a", "tso", "tso", Kind.VALIDATION, "TSO validates and clears in one problem"),
        Step("2b", "tso", "aggregator", Kind.DISPATCH, "TSO sends dispatch to DER"),
    )

    @staticmethod
    def _validations(
        names: Iterable[str], bids: pd.DataFrame, integrated: IntegratedResult
    ) -> tuple[dict[str, ValidationResult], pd.DataFrame]:
        """What the integrated problem's rows validate of each DSO's bids, by the DSO's name
        (:meth:`_validation`), and the validation table of every DSO's rows end to end (in
        the order of ``names``; the TSO validates them all).

        The bids' columns are read once, as numpy arrays: a few hundred rows, where pandas'
        cost per operation would dominate. The validation table is built once, from the
        columns, and each DSO's result holds its rows of it (the validator's column too): a
        table of the results' columns, and the validation table made of it again, cost
        twice as much."""
        dso = text(bids, "dso")
        columns = (numbers(bids, "bid_id", np.int64), numbers(bids, "mw"), text(bids, "direction"))
        parts = {}
        for name in names:
            mine = dso == name
            parts[name] = TsoManaged._validation(name, *(c[mine] for c in columns), integrated)
        tables = [part for part, _, _ in parts.values()]
        lengths = [len(part["bid_id"]) for part in tables]
        if not sum(lengths):
            table = no_validation()
        else:
            joined = {c: np.concatenate([part[c] for part in tables]) for c in VALIDATION_COLUMNS}
            table = new_frame(joined)
        ends = np.cumsum([0, *lengths]).tolist()
        results = {
            name: ValidationResult(
                numbered_rows(table, slice(lo, hi)),
                integrated.rounds,
                reason == "ok",
                message=reason,
                method="integrated_dc_opf",
                directions=directions,
            )
            for (name, (_, reason, directions)), lo, hi in zip(
                parts.items(), ends[:-1], ends[1:], strict=True
            )
        }
        return results, table

    @staticmethod
    def _validation(
        name: str,
        bid_id: np.ndarray,
        offered: np.ndarray,
        direction: np.ndarray,
        integrated: IntegratedResult,
    ) -> tuple[dict[str, np.ndarray], str, dict[str, DirectionStats]]:
        """What the integrated problem's rows validate of one DSO's bids (their ids, offered
        MW and directions; the DSOs' max-volume LP on them, the dispatch included): the
        validation table's columns, the reason (``ok`` or why rejected) and the per-direction
        figures (the caller makes one table of every DSO's columns)."""
        mw = integrated.validated_mw.get(name)
        validated = np.zeros(len(bid_id))
        if mw is not None:  # the rows' validated MW, aligned with the bids offering > 1e-9 MW
            validated[offered > 1e-9] = mw
        if name in integrated.excluded:
            reason = "rejected: no AC-safe dispatch in the integrated problem"
        elif mw is None:
            reason = "rejected: no operational data"
        else:
            reason = "ok"
        reasons = np.full(len(bid_id), reason, dtype=object)
        validator = np.full(len(bid_id), "tso", dtype=object)
        columns = {
            "bid_id": bid_id,
            "validator": validator,
            "validated_mw": validated,
            "reason": reasons,
        }
        converged = reason == "ok"
        mine = {d: direction == d for d in ("down", "up")}  # each text comparison once
        directions = {  # nansum: the sums Series.sum() makes
            d: DirectionStats(
                offered_mw=float(np.nansum(offered[sel])),
                validated_mw=float(np.nansum(validated[sel])),
                converged=converged,
            )
            for d, sel in mine.items()
        }
        return columns, reason, directions

    def run(self, ctx: PeriodContext, inputs: PeriodInputs) -> Generator:
        clock, bids, parties = ctx.clock, inputs.bids, self.parties
        books = {(a.name, "tso"): a.bid_columns(bids) for a in parties.aggregators.values()}
        ctx.send(self.step("1a"), books, clock.bids_gate)
        measured = {n: d.operational_data(inputs.forecasts[n]) for n, d in parties.dsos.items()}
        reports = {(n, "tso"): table for n, (table, _) in measured.items()}
        ctx.send(self.step("1b"), reports, clock.bids_gate)
        yield ctx.wait_until(clock.bids_gate)
        received = concat(ctx.inbox("tso", Kind.BIDS).values(), bids)
        state = ctx.inbox("tso", Kind.OPERATIONAL_DATA)
        ctx.records.operational_data.update(state)

        reported = {n: d for n, d in parties.dsos.items() if n in state}
        # the DSOs' own power flows of the states that arrived as sent: the TSO's would repeat them
        flows = {n: flow for n, (table, flow) in measured.items() if state.get(n) is table}
        clearing, integrated = ctx.timed(
            "tso",
            "clearing",
            parties.tso.clear_integrated,
            inputs.plan,
            received,
            state,
            reported,
            flows,
        )
        self.record_clearing(ctx, clearing, integrated.distribution_rows, integrated.rounds)
        results, validation = self._validations(parties.dsos, received, integrated)
        for name, result in results.items():
            self.record_validation(ctx, "tso", result, name)
        ctx.send(self.step("2a"), {("tso", "tso"): validation})
        dispatch = der_dispatch_columns(clearing)
        delivered = yield from self.dispatch_to_der(ctx, "2b", {"tso": dispatch}, received)
        return PeriodOutcome(validation, clearing, delivered, dict(inputs.forecasts), ctx.records)
