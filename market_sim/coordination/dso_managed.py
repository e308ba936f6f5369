"""C. DSO-managed model (the paper's Fig. 3).

0. (independent DSOs only) asset owner -> iDSO: the network status of the period.
1. DER -> DSO: bids.  2a. The DSO validates and aggregates them.
2b. DSO -> TSO: aggregated offers at the interface (a price-quantity curve).
3. The TSO dispatches TER and aggregated offers; TSO -> DSO: aggregated dispatch.
4. DSO -> DER: individual dispatch that meets the aggregate at least cost.

With a distribution-level market (config ``dso_market``):
(i) ``local_first``: in step 2 the DSO clears its local market for its own needs first and
aggregates only the remaining bids; in step 4 both the DSO's and the TSO's commands reach DER.
(ii) ``tso_target``: step 3 sends a target at the interface; in step 4 the DSO meets it and its
own needs from its local market, the priority rule deciding, and reports any shortfall.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace

import numpy as np
import pandas as pd

from market_sim.agents.dso import validated_bids
from market_sim.coordination.base import NETWORK_STATUS_STEP, CoordinationModel
from market_sim.coordination.period import (
    PeriodContext,
    PeriodInputs,
    PeriodOutcome,
    Step,
    accepted_der,
    concat,
    no_dispatch,
    validation_table,
)
from market_sim.markets.aggregation import accepted_steps
from market_sim.markets.offers import empty_offers
from market_sim.markets.priority import left_after, taken
from market_sim.markets.tso_markets import TsoPlan
from market_sim.messages import Kind
from market_sim.types import Injections

#: Aggregated offer ids of DSO number k start at k * OFFER_ID_BLOCK.
OFFER_ID_BLOCK = 1_000_000


class DsoManaged(CoordinationModel):
    name = "dso_managed"
    steps = (
        NETWORK_STATUS_STEP,
        Step("1", "aggregator", "dso", Kind.BIDS, "DER send their bids to their DSO"),
        Step("2a", "dso", "dso", Kind.VALIDATION, "each DSO validates and aggregates"),
        Step("2b", "dso", "tso", Kind.AGGREGATED_OFFER, "DSOs send aggregated offers"),
        Step("2b", "dso", "tso", Kind.FLEXIBILITY_AREA, "and, if configured, their P-Q area"),
        Step("3", "tso", "dso", Kind.AGGREGATED_DISPATCH, "TSO clears, sends aggregated dispatch"),
        Step("4", "dso", "aggregator", Kind.DISPATCH, "DSOs dispatch individual DER"),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scheme = self.dso_market.scheme if self.dso_market.enabled else None
        if self.scheme == "tso_target":
            self.steps = tuple(
                replace(s, kind=Kind.INTERFACE_TARGET, does="TSO sets a target at the interface")
                if s.label == "3"
                else s
                for s in type(self).steps
            )

    def run(self, ctx: PeriodContext, inputs: PeriodInputs) -> Generator:
        inputs = yield from self.exchange_status(ctx, inputs)
        clock, bids, dsos = ctx.clock, inputs.bids, self.parties.dsos
        self.send_bids(ctx, bids)
        yield ctx.wait_until(clock.bids_gate)

        rows, validated, offers, local, points = self._validate_and_aggregate(ctx, inputs)
        validation = validation_table(zip(dsos, rows, strict=True))
        ctx.send(self.step("2a"), {(n, n): r for n, r in zip(dsos, rows, strict=True)})
        ctx.send(self.step("2b", Kind.AGGREGATED_OFFER), offers, clock.validation_gate)
        areas = {
            (name, "tso"): ctx.timed(
                name, "flexibility_area", dso.flexibility_area, validated[name], points[name]
            )
            for name, dso in dsos.items()
            if dso.config.flexibility_area
        }
        if areas:
            ctx.send(self.step("2b", Kind.FLEXIBILITY_AREA), areas, clock.validation_gate)
        yield ctx.wait_until(clock.validation_gate)

        clearing, aggregates = self._clear_curves(ctx, inputs)
        yield ctx.send(self.step("3"), aggregates, clock.dispatch_gate)
        individual: dict[str, pd.DataFrame | None] = dict.fromkeys(dsos)
        shortfall = 0.0
        for name in dsos:
            for aggregate in ctx.inbox(name, self.step("3").kind).values():
                individual[name], missing = ctx.timed(
                    name,
                    "disaggregation",
                    self._dispatch_der,
                    ctx,
                    name,
                    validated[name],
                    offers[(name, "tso")],
                    aggregate,
                    local.get(name),
                    points,
                    inputs.plan,
                )
                shortfall += missing
        # an empty dispatch is copied only for a DSO that received no aggregate, not for
        # every DSO every period
        commands = {n: no_dispatch() if d is None else d for n, d in individual.items()}
        delivered = yield from self.dispatch_individual(ctx, commands, bids)
        return PeriodOutcome(validation, clearing, delivered, points, ctx.records, shortfall)

    def send_bids(self, ctx: PeriodContext, bids: pd.DataFrame) -> None:
        """Step 1: DER send their bids to their DSO by the bid gate."""
        ctx.send(self.step("1"), self.books_by_dso(bids), ctx.clock.bids_gate)

    def dispatch_individual(
        self, ctx: PeriodContext, individual: dict[str, pd.DataFrame], bids: pd.DataFrame
    ) -> Generator:
        """Step 4: each DSO's individual dispatch to the aggregators of its DER; returns the
        dispatch that reached them."""
        return (yield from self.dispatch_to_der(ctx, "4", individual, bids))

    def bids_of(self, ctx: PeriodContext, name: str, bids: pd.DataFrame) -> pd.DataFrame:
        """The bids DSO ``name`` validates in step 2a: those that reached it."""
        return concat(ctx.inbox(name, Kind.BIDS).values(), bids)

    def _validate_and_aggregate(self, ctx: PeriodContext, inputs: PeriodInputs) -> tuple:
        """Step 2a: each DSO validates the bids it received and (scheme i: after buying for
        its own needs) aggregates what is left into its offer curve."""
        rows, validated, offers, local, points = [], {}, {}, {}, {}
        for k, (name, dso) in enumerate(self.parties.dsos.items()):
            received = self.bids_of(ctx, name, inputs.bids)
            forecast = inputs.forecasts[name]
            result = ctx.timed(name, "validation", dso.validate, received, forecast)
            points[name] = dso.operating_point(forecast, result)
            rows.append(self.validation_rows(ctx, name, result, name))
            offered = validated_bids(received, result)
            if self.scheme == "local_first":  # the local market clears first
                bought = self.dso_requests(ctx, {name: offered}, points)[name].bought
                local[name] = _bought_by(bought, name)
                offered = left_after(offered, bought)
            offers[(name, "tso")] = dso.aggregated_offer(offered, k * OFFER_ID_BLOCK)
            validated[name] = offered
        return rows, validated, offers, local, points

    def _clear_curves(self, ctx: PeriodContext, inputs: PeriodInputs) -> tuple:
        """Step 3: the TSO clears the curves that arrived; each DSO's share of the result."""
        curves = ctx.inbox("tso", Kind.AGGREGATED_OFFER)
        for area in ctx.inbox("tso", Kind.FLEXIBILITY_AREA).values():
            ctx.records.flexibility_areas.append(area)
        clearing = self.clear_and_record(ctx, inputs.plan, concat(curves.values(), empty_offers()))
        accepted = accepted_der(clearing)
        ids = accepted.offer_id.to_numpy()  # numpy's isin: pandas' costs a hash table a curve
        aggregates = {
            ("tso", n): accepted[np.isin(ids, c.offer_id.to_numpy())] for n, c in curves.items()
        }
        return clearing, aggregates

    def _dispatch_der(
        self,
        ctx: PeriodContext,
        name: str,
        validated: pd.DataFrame,
        offer: pd.DataFrame,
        aggregate: pd.DataFrame,
        local: pd.DataFrame | None,
        points: dict[str, Injections],
        plan: TsoPlan,
    ) -> tuple[pd.DataFrame, float]:
        """A DSO's step 4: individual dispatch for the TSO's aggregate (and its own needs).

        Returns the dispatch and the MW of the TSO's aggregate or target it could not meet.
        """
        dso = self.parties.dsos[name]
        direction, target_mw = accepted_steps(offer, aggregate)
        wanted = float(np.nansum(target_mw))  # nansum: the sum Series.sum() makes
        if self.scheme == "tso_target":  # meet the target and the DSO's needs, by priority
            signed = float(np.nansum(target_mw * np.where(direction == "up", 1, -1)))
            requests = self.dso_requests(ctx, {name: validated}, points)
            dispatch = self.share(
                ctx,
                plan,
                validated,
                requests,
                lambda b: (None, dso.disaggregate(b, offer, aggregate)),
                tso_need_mw=signed,
            )[1]
        else:
            dispatch = dso.disaggregate(validated, offer, aggregate)
            if local is not None and len(local):
                self.record_priority(
                    ctx,
                    "local_first",
                    name,
                    local.bid_id,
                    local.mw,
                    local.mw,
                    taken(dispatch, local.bid_id),
                )
                dispatch = pd.concat([dispatch, local], ignore_index=True)
        to_tso = dispatch.buyer.to_numpy(object) == "tso"
        met = float(np.nansum(dispatch.mw.to_numpy(float)[to_tso]))
        if wanted - met > 1e-6:
            ctx.event(
                "interface_shortfall", f"{name}: {wanted - met:.3f} MW of the TSO's target unmet"
            )
        return dispatch, max(0.0, wanted - met)


def _bought_by(bought: pd.DataFrame, buyer: str) -> pd.DataFrame:
    """``bought.assign(buyer=buyer)`` of a DSO's purchase (numpy columns, labelled by the
    bids' rows), built from copies of its columns: assign's copy of the frame and insertion
    of a column cost five times as much on a table of a few rows."""
    columns = {c: bought[c].to_numpy(copy=True) for c in bought.columns}
    columns["buyer"] = np.full(len(bought), buyer, dtype=object)
    return pd.DataFrame(columns, index=bought.index, copy=False)
