"""What every coordination model shares: its declared steps and the helpers its steps use.

A coordination model is one module that declares its steps (who sends what to whom, with the
paper's step label) and runs them as a simpy process on a :class:`PeriodContext`, between the
agents of :class:`Parties`, returning a :class:`PeriodOutcome`. Everything before (forecasts,
bids) and after (delivery, settlement, KPIs) is common and lives in :mod:`market_sim.model`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from market_sim.config import DsoMarketConfig
from market_sim.coordination.period import (
    VALIDATION_COLUMNS,
    Parties,
    PeriodContext,
    PeriodInputs,
    Step,
    accepted_der,
    as_dispatch,
    concat,
    taken,
)
from market_sim.markets.aggregation import bid_offers
from market_sim.markets.local_market import LocalMarketResult
from market_sim.markets.sharing import economic_takes, tso_goes_first, tso_is_critical
from market_sim.messages import Kind
from market_sim.types import Injections, ValidationResult

if TYPE_CHECKING:
    from market_sim.markets.clearing import BalancingResult


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

    # -- helpers shared by the models ----------------------------------------------------------
    def step(self, label: str, kind: Kind | None = None) -> Step:
        """The declared step of ``label`` (of ``kind``, where a label carries several)."""
        return next(s for s in self.steps if s.label == label and kind in (None, s.kind))

    def dispatch_to_der(
        self,
        ctx: PeriodContext,
        label: str,
        by_sender: dict[str, pd.DataFrame],
        bids: pd.DataFrame,
    ) -> Generator:
        """Send individual dispatch to the aggregators by the dispatch gate; they collect it.

        Every aggregator the sender serves gets a command, empty when none of its bids is
        used. Returns the dispatch (bid_id, mw) that reached the DER: a late one is lost.
        """
        located = bids[["bid_id", "aggregator", "dso", "direction"]]
        aggregators = self.parties.aggregators.values()
        tables = {}
        for sender, dispatch in by_sender.items():
            table = dispatch[dispatch.mw > 1e-9].merge(located, on="bid_id")
            for agg in aggregators:
                if sender == "tso" or sender in agg.dsos:
                    mine = table[table.aggregator == agg.name].drop(columns="aggregator")
                    tables[(sender, agg.name)] = mine.reset_index(drop=True)
        yield ctx.send(self.step(label), tables, ctx.clock.dispatch_gate)
        received = [
            agg.receive_dispatch(list(ctx.inbox(agg.name, Kind.DISPATCH).values()))
            for agg in aggregators
        ]
        return concat(received, as_dispatch([], []))

    def validation_rows(
        self, ctx: PeriodContext, validator: str, result: ValidationResult, network: str
    ) -> pd.DataFrame:
        """Validation table rows of one validator; its run is recorded, a failure is an event."""
        if not result.converged:
            ctx.event("validation_failed", f"{validator}: {result.message}")
        ctx.records.validation_runs += validation_runs(ctx.clock.period, validator, network, result)
        return result.table.assign(validator=validator)[VALIDATION_COLUMNS]

    def clear_bids(
        self, ctx: PeriodContext, usable: pd.DataFrame
    ) -> tuple[BalancingResult, pd.DataFrame]:
        """The TSO clears individual bids at their DSO's interface bus; returns the clearing
        and the DER dispatch (bid_id, mw)."""
        offers = bid_offers(usable, self.parties.interface_buses())
        clearing = self.clear_and_record(ctx, offers)
        accepted = accepted_der(clearing)
        return clearing, as_dispatch(accepted.offer_id, accepted.mw)

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
        return {
            name: ctx.timed(
                name, "local_market", dsos[name].local_market, table, points[name], penalty
            )
            for name, table in validated.items()
        }

    def share(
        self,
        ctx: PeriodContext,
        usable: pd.DataFrame,
        requests: dict[str, LocalMarketResult],
        clear,
        tso_need_mw: float | None = None,
        tso_cost=None,
    ) -> tuple[object, pd.DataFrame]:
        """Serve the TSO (through ``clear``) and the DSOs' requests from the same validated bids.

        ``clear(bids) -> (result, tso dispatch)`` is the TSO's side. The priority rule decides
        who goes first (:mod:`market_sim.markets.sharing`); the TSO's need is critical when its
        generators cannot cover it. ``tso_need_mw`` is what the TSO wants from these bids in the
        economic rule (default: its whole need). ``tso_cost(bids)``, where given, is the TSO's
        balancing cost (EUR/h) with all of ``bids``: what the DSOs' taking first cost the TSO
        is then recorded, as is what the DSOs asked for and did not get. Returns the TSO's
        result and the whole dispatch (buyer tso or a DSO's name); the ``priority`` table
        records who got what.
        """
        wanted = {n: r for n, r in requests.items() if not r.bought.empty}
        if not wanted:
            return clear(usable)
        tso = self.parties.tso
        rule = self.dso_market.priority
        bought = pd.concat([r.bought for r in wanted.values()], ignore_index=True)
        request = taken(bought, usable.bid_id)
        ter = tso.ter_offers()
        need = float(tso.need_mw.sum())
        if tso_need_mw is None:
            tso_need_mw = need
        if tso_goes_first(rule, tso_is_critical(need, ter)):
            result, tso_dispatch = clear(usable)
            take = np.minimum(
                request, usable.mw.to_numpy(float) - taken(tso_dispatch, usable.bid_id)
            )
        else:
            take = request
            if rule == "economic":
                takes = economic_takes(usable, wanted, tso_need_mw, ter, self.voll_eur_per_mwh)
                take = np.sum(list(takes.values()), axis=0)
            alone = tso_cost(usable) if tso_cost is not None else None
            result, tso_dispatch = clear(usable.assign(mw=usable.mw.to_numpy(float) - take))
            if alone is not None and result is not None and result.ok:
                ctx.records.tso_extra_cost_eur_per_h += result.cost_eur - alone
        take = np.where(take > 1e-9, take, 0.0)
        ctx.records.dso_shortfall_mw += float(np.sum(request - take).clip(0.0))
        local = pd.DataFrame(
            {
                "bid_id": usable.bid_id.to_numpy(np.int64),
                "mw": take,
                "buyer": usable.dso.astype(object).to_numpy(),
            }
        )
        dispatch = pd.concat([tso_dispatch, local[local.mw > 0]], ignore_index=True)
        for name in wanted:
            mine = (usable.dso == name).to_numpy()
            self.record_priority(
                ctx,
                rule,
                name,
                usable.bid_id[mine],
                request[mine],
                take[mine],
                taken(tso_dispatch, usable.bid_id[mine]),
            )
        return result, dispatch

    def record_priority(self, ctx, rule, dso, bid_ids, requested, dso_mw, tso_mw) -> None:
        """Rows of the ``priority`` table: who got each contested or used DER of a DSO."""
        record = pd.DataFrame(
            {
                "period": ctx.clock.period,
                "dso": dso,
                "rule": rule,
                "bid_id": np.asarray(bid_ids, np.int64),
                "dso_requested_mw": np.asarray(requested, float),
                "dso_mw": np.asarray(dso_mw, float),
                "tso_mw": np.asarray(tso_mw, float),
            }
        )
        used = (record.dso_requested_mw > 0) | (record.dso_mw > 0) | (record.tso_mw > 0)
        ctx.records.priority.append(record[used])

    def clear_and_record(self, ctx: PeriodContext, offers: pd.DataFrame) -> BalancingResult:
        """The TSO's clearing; a failed solve is an event and dispatches nothing."""
        result = ctx.timed("tso", "clearing", self.parties.tso.clear, offers)
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
