"""What every coordination model shares: its declared steps and the helpers its steps use.

A coordination model is one module that declares its steps (who sends what to whom, with the
paper's step label) and runs them as a simpy process on a :class:`PeriodContext`, between the
agents of :class:`Parties`, returning a :class:`PeriodOutcome`. Everything before (forecasts,
bids) and after (delivery, settlement, KPIs) is common and lives in :mod:`market_sim.model`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from market_sim.columns import Columns, array_of, new_frame, numbers, positions, rows_where, text
from market_sim.config import DsoMarketConfig
from market_sim.coordination.period import (
    VALIDATION_COLUMNS,
    Parties,
    PeriodContext,
    PeriodInputs,
    Step,
    der_dispatch,
    no_dispatch,
)
from market_sim.grid.state import injections_from_table
from market_sim.markets import priority
from market_sim.markets.local_market import LocalMarketResult
from market_sim.markets.tso_markets import TsoPlan
from market_sim.messages import Kind
from market_sim.types import Injections, ValidationResult

if TYPE_CHECKING:
    from market_sim.markets.balancing import BalancingResult


#: Step 0 of the models where DSOs validate (issue 9): each independent DSO's asset owner sends
#: it the period's network status. Declared by the models that support it, sent only with iDSOs.
NETWORK_STATUS_STEP = Step(
    "0", "dso", "dso", Kind.NETWORK_STATUS, "asset owners send their iDSO the network status"
)


class CoordinationModel:
    """Base of the coordination models; subclasses declare ``steps`` and write ``run``."""

    name: ClassVar[str]
    steps: ClassVar[tuple[Step, ...]]

    def __init__(self, parties: Parties, dso_market: DsoMarketConfig, voll_eur_per_mwh: float):
        self.parties = parties
        self.dso_market = dso_market
        self.voll_eur_per_mwh = voll_eur_per_mwh

    def run(self, ctx: PeriodContext, inputs: PeriodInputs) -> Generator:
        """The model's steps for one period, as a simpy process returning a PeriodOutcome."""
        raise NotImplementedError

    def offered(self, bids: pd.DataFrame) -> pd.DataFrame:
        """The population's bids as this model's parties offer them (gate opening): each
        through the aggregator its prosumer chose. A model in which someone else operates the
        DER (the DSO as their aggregator) names it here, so that the bids table, dispatch and
        settlement all see who did the aggregator's work."""
        return bids

    def books_by_dso(self, bids: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
        """Each aggregator's bid book split by DSO: one message per aggregator and DSO it
        covers (DER send their bids to their DSO first)."""
        books = {}
        for agg in self.parties.aggregators.values():
            book = agg.bid_book(bids)
            for name in agg.dsos:
                books[(agg.name, name)] = rows_where(book, "dso", name)
        return books

    # -- helpers shared by the models ----------------------------------------------------------
    def exchange_status(self, ctx: PeriodContext, inputs: PeriodInputs) -> Generator:
        """Step 0 (models that declare it): each independent DSO's asset owner sends it the
        network status at the period's forecast point, due by the bid gate; returns the inputs
        with each iDSO's forecast rebuilt from the status it received (where it validates).

        An iDSO whose status did not arrive validates at its own forecast (an event says so).
        Without iDSOs nothing is sent and the inputs come back unchanged.
        """
        owners = self.parties.owners
        if not owners:
            return inputs
        tables = {
            (owner.name, name): ctx.timed(
                owner.name, "network_status", owner.network_status, inputs.forecasts[name]
            )
            for name, owner in owners.items()
        }
        yield ctx.send(NETWORK_STATUS_STEP, tables, ctx.clock.bids_gate)
        forecasts = dict(inputs.forecasts)
        for name, owner in owners.items():
            status = ctx.inbox(name, Kind.NETWORK_STATUS).get(owner.name)
            if status is None:
                ctx.event("network_status_missing", f"{name}: no status from {owner.name}")
                continue
            forecasts[name] = injections_from_table(self.parties.dsos[name].network, status)
        return replace(inputs, forecasts=forecasts)

    def step(self, label: str, kind: Kind | None = None) -> Step:
        """The declared step of ``label`` (of ``kind``, where a label carries several)."""
        return next(s for s in self.steps if s.label == label and kind in (None, s.kind))

    def dispatch_to_der(
        self,
        ctx: PeriodContext,
        label: str,
        by_sender: dict[str, Columns],
        bids: pd.DataFrame,
    ) -> Generator:
        """Send individual dispatch to the aggregators by the dispatch gate; they collect it.

        Every aggregator the sender serves gets a command, empty when none of its bids is
        used, as columns (:meth:`Located.command_columns`: the aggregator only reads them
        back). A sender's dispatch is a table or its columns (:func:`~.period.as_dispatch`'s).
        Returns the dispatch (bid_id, mw) that reached the DER: a late one is lost.
        """
        aggregators = self.parties.aggregators.values()
        tables = {}
        for sender, dispatch in by_sender.items():
            located = Located(dispatch, bids)
            for agg in aggregators:
                if sender == "tso" or sender in agg.dsos:
                    tables[(sender, agg.name)] = located.command_columns(agg.name)
        yield ctx.send(self.step(label), tables, ctx.clock.dispatch_gate)
        received = [
            agg.receive_dispatch(list(ctx.inbox(agg.name, Kind.DISPATCH).values()))
            for agg in aggregators
        ]
        return _joined_dispatch(received)

    def validation_rows(
        self, ctx: PeriodContext, validator: str, result: ValidationResult, network: str
    ) -> pd.DataFrame:
        """Validation table rows of one validator, its run recorded (:meth:`record_validation`)."""
        self.record_validation(ctx, validator, result, network)
        table = result.table
        named = np.full(len(table), validator, dtype=object)
        # built from copies of the columns, in order, without copying again: an assign and a
        # selection, or pandas' copying constructor, cost twice as much
        columns = {
            c: named if c == "validator" else np.array(array_of(table, c))
            for c in VALIDATION_COLUMNS
        }
        return pd.DataFrame(columns, copy=False)

    def record_validation(
        self, ctx: PeriodContext, validator: str, result: ValidationResult, network: str
    ) -> None:
        """A validator's run is recorded, a failure is an event, and so are power flows that
        pandapower solved instead of lightsim2grid."""
        if not result.converged:
            ctx.event("validation_failed", f"{validator}: {result.message}")
        if result.runpp_reason:
            reason = result.runpp_reason
            ctx.event(
                "power_flow_fallback", f"{validator}: validation on pandapower runpp: {reason}"
            )
        ctx.records.validation_runs += validation_runs(ctx.clock.period, validator, network, result)

    def clear_bids(
        self, ctx: PeriodContext, plan: TsoPlan, usable: pd.DataFrame
    ) -> tuple[BalancingResult, pd.DataFrame]:
        """The TSO clears individual bids at their DSO's interface bus; returns the clearing
        and the DER dispatch (bid_id, mw)."""
        clearing = ctx.timed("tso", "clearing", self.parties.tso.clear_bids, plan, usable)
        self.record_clearing(ctx, clearing)
        return clearing, der_dispatch(clearing)

    # -- the DSOs' own needs (config: dso_market) --------------------------------------------
    def dso_requests(
        self,
        ctx: PeriodContext,
        validated: dict[str, pd.DataFrame],
        points: dict[str, Injections],
    ) -> dict[str, LocalMarketResult]:
        """Each DSO's least-cost purchase of relief for its predicted violations."""
        if not self.dso_market.enabled:
            return {}
        penalty = self.dso_market.violation_penalty_eur_per_h
        dsos = self.parties.dsos
        requests = {
            name: ctx.timed(
                name, "local_market", dsos[name].local_market, table, points[name], penalty
            )
            for name, table in validated.items()
        }
        for name, request in requests.items():
            if request.message:
                ctx.event("local_market_failed", f"{name}: {request.message}")
        return requests

    def share(
        self,
        ctx: PeriodContext,
        plan: TsoPlan,
        usable: pd.DataFrame,
        requests: dict[str, LocalMarketResult],
        clear: priority.Clear,
        tso_need_mw: float | None = None,
        tso_cost=None,
    ) -> tuple[object, pd.DataFrame]:
        """Serve the TSO (through ``clear``) and the DSOs' requests from the same validated bids,
        by the scenario's priority rule (:func:`market_sim.markets.priority.share`).

        Records who got what (``priority`` table), what the rule cost the side that did not go
        first, and a failed allocation as a ``priority_failed`` event. Returns the TSO's result
        and the whole dispatch (buyer tso or a DSO's name).
        """
        sharing = priority.share(
            self.dso_market.priority,
            usable,
            requests,
            clear,
            self.parties.tso.ter_offers(plan),
            float(plan.need_mw.sum()),
            self.voll_eur_per_mwh,
            tso_need_mw,
            tso_cost,
        )
        if not sharing.ok:
            ctx.event("priority_failed", sharing.message)
        ctx.records.tso_extra_cost_eur_per_h += sharing.tso_extra_cost_eur_per_h
        ctx.records.dso_shortfall_mw += sharing.dso_shortfall_mw
        ctx.records.priority.append(sharing.priority_rows)
        return sharing.result, sharing.dispatch

    def record_priority(self, ctx, rule, dso, bid_ids, requested, dso_mw, tso_mw) -> None:
        """Rows of the ``priority`` table: who got each contested or used DER of a DSO."""
        rows = priority.priority_rows(rule, dso, bid_ids, requested, dso_mw, tso_mw)
        ctx.records.priority.append(rows)

    def clear_and_record(
        self, ctx: PeriodContext, plan: TsoPlan, offers: pd.DataFrame
    ) -> BalancingResult:
        """The TSO's clearing; a failed solve is an event and dispatches nothing."""
        result = ctx.timed("tso", "clearing", self.parties.tso.clear, plan, offers)
        self.record_clearing(ctx, result)
        return result

    def record_clearing(
        self,
        ctx: PeriodContext,
        result: BalancingResult,
        distribution_rows: int = 0,
        rounds: int = 1,
    ) -> None:
        """The ``clearing_runs`` row of the period; a failed solve is also an event."""
        if not result.ok:
            ctx.event("clearing_failed", result.message)
        ctx.records.clearing_runs.append(
            {
                "period": ctx.clock.period,
                "ok": result.ok,
                "n_variables": result.n_variables,
                "n_constraints": result.n_constraints,
                "distribution_constraints": distribution_rows,
                "rounds": rounds,
            }
        )


class Located:
    """A dispatch (rows above 1e-9 MW; a table or its columns) with each bid's aggregator, DSO
    and direction from the bid book, to split into one command per aggregator.

    Columns are taken by position (a dispatch has a few hundred rows; a merge and a boolean
    index per aggregator cost most of the step): each command holds the dispatch's columns
    and the bid's dso and direction, with their dtypes, in dispatch order, as an inner merge
    of the dispatch with the bid book on ``bid_id`` gives them.
    """

    def __init__(self, dispatch: Columns, bids: pd.DataFrame) -> None:
        at = positions(numbers(bids, "bid_id", np.int64), numbers(dispatch, "bid_id", np.int64))
        rows = np.flatnonzero((numbers(dispatch, "mw") > 1e-9) & (at >= 0))
        self.aggregator = text(bids, "aggregator")[at[rows]]
        # the frames' own arrays (numpy's, or pandas strings): indexing pandas' wrapper of one
        # checks the indexer first, for each column of each command (a table iterates over its
        # column names, a mapping over its keys)
        self.columns = {c: array_of(dispatch, c)[rows] for c in dispatch}
        self.columns |= {c: array_of(bids, c)[at[rows]] for c in ("dso", "direction")}

    def command_columns(self, aggregator: str) -> dict[str, np.ndarray]:
        """The columns of the rows of ``aggregator``'s bids (without the aggregator column; new
        arrays), a message whose receiver only reads columns: a frame of them cost more than
        the rest of the split."""
        mine = np.flatnonzero(self.aggregator == aggregator)
        return {c: values[mine] for c, values in self.columns.items()}


def _joined_dispatch(received: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """The aggregators' collected dispatch columns as one table, in aggregator order (what
    :func:`concat` of their tables gives), built once instead of a table per aggregator."""
    parts = [columns for columns in received if len(columns["mw"])]
    if not parts:
        return no_dispatch()
    joined = {c: np.concatenate([columns[c] for columns in parts]) for c in parts[0]}
    return new_frame(joined)


def validation_runs(
    period: int, validator: str, network: str, result: ValidationResult
) -> list[dict[str, Any]]:
    """One ``validation_runs`` row per direction of a validation result."""
    return [
        {
            "period": period,
            "validator": validator,
            "network": network,
            "method": result.method,
            "fairness": result.fairness,
            "direction": direction,
            "offered_mw": stats.offered_mw,
            "validated_mw": stats.validated_mw,
            "jain_index": stats.jain,
            "min_share": stats.min_share,
            "converged": stats.converged,
            "ac_power_flows": result.iterations,
            "lp_solves": stats.lp_solves,
            "binding": "; ".join(stats.binding),
        }
        for direction, stats in sorted(result.directions.items())
    ]
