"""C. DSO-managed model (the paper's Fig. 3).

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

import pandas as pd

from market_sim.agents.dso import validated_bids
from market_sim.coordination.base import (
    CoordinationModel,
    PeriodOutcome,
    Step,
    accepted_der,
    as_dispatch,
)
from market_sim.markets.offers import empty_offers
from market_sim.markets.priority import taken
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
        Step("2b", "dso", "tso", Kind.FLEXIBILITY_AREA, "and, if configured, their P-Q area"),
        Step("3", "tso", "dso", Kind.AGGREGATED_DISPATCH, "TSO clears, sends aggregated dispatch"),
        Step("4", "dso", "aggregator", Kind.DISPATCH, "DSOs dispatch individual DER"),
    )

    def __init__(self, sim) -> None:
        super().__init__(sim)
        market = sim.config.dso_market
        self.scheme = market.scheme if market.enabled else None
        if self.scheme == "tso_target":
            self.steps = tuple(
                replace(s, kind=Kind.INTERFACE_TARGET, does="TSO sets a target at the interface")
                if s.label == "3"
                else s
                for s in type(self).steps
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

        rows, validated, offers, local = [], {}, {}, {}
        for k, (name, dso) in enumerate(sim.dsos.items()):
            received = pd.concat(
                [bids.iloc[0:0], *self.inbox(name, Kind.BIDS).values()], ignore_index=True
            )
            result = sim.timed(name, "validation", dso.validate, received)
            rows.append(self.validation_rows(name, result))
            validated[name] = validated_bids(received, result)
            offered = validated[name]
            if self.scheme == "local_first":  # the local market clears first
                bought = self.dso_requests({name: offered})[name].bought
                local[name] = bought.assign(buyer=name)
                offered = offered.assign(mw=offered.mw - taken(bought, offered.bid_id))
            offers[(name, "tso")] = dso.aggregated_offer(offered, k * OFFER_ID_BLOCK)
            validated[name] = offered
        validation = pd.concat([PeriodOutcome().validation, *rows], ignore_index=True)
        self.send(clock, "2a", {(n, n): r for n, r in zip(sim.dsos, rows, strict=True)})
        self.send(clock, "2b", offers, clock.validation_gate)
        areas = {
            (name, "tso"): sim.timed(
                name, "flexibility_area", dso.flexibility_area, validated[name]
            )
            for name, dso in sim.dsos.items()
            if dso.config.flexibility_area
        }
        if areas:
            self.send(clock, "2b", areas, clock.validation_gate, Kind.FLEXIBILITY_AREA)
        yield sim.post.wait_until(clock.validation_gate)

        curves = self.inbox("tso", Kind.AGGREGATED_OFFER)
        for area in self.inbox("tso", Kind.FLEXIBILITY_AREA).values():
            sim.recorder.add("flexibility_areas", area.assign(period=sim.period))
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
        shortfall = 0.0
        for name in sim.dsos:
            for aggregate in self.inbox(name, self.step("3").kind).values():
                individual[name], missing = sim.timed(
                    name,
                    "disaggregation",
                    self._dispatch_der,
                    name,
                    validated[name],
                    offers[(name, "tso")],
                    aggregate,
                    local.get(name),
                )
                shortfall += missing
        delivered = yield from self.dispatch_to_der(clock, "4", individual, bids)
        return PeriodOutcome(validation, clearing, delivered, shortfall)

    def _dispatch_der(
        self,
        name: str,
        validated: pd.DataFrame,
        offer: pd.DataFrame,
        aggregate: pd.DataFrame,
        local: pd.DataFrame | None,
    ) -> tuple[pd.DataFrame, float]:
        """A DSO's step 4: individual dispatch for the TSO's aggregate (and its own needs).

        Returns the dispatch and the MW of the TSO's aggregate or target it could not meet.
        """
        dso = self.sim.dsos[name]
        target = offer.merge(aggregate[["offer_id", "mw"]], on="offer_id", suffixes=("_o", ""))
        wanted = float(target.mw.sum())
        if self.scheme == "tso_target":  # meet the target and the DSO's needs, by priority
            signed = float((target.mw * (target.direction == "up").map({True: 1, False: -1})).sum())
            requests = self.dso_requests({name: validated})
            dispatch = self.share(
                validated,
                requests,
                lambda b: (None, dso.disaggregate(b, offer, aggregate)),
                tso_need_mw=signed,
            )[1]
        else:
            dispatch = dso.disaggregate(validated, offer, aggregate)
            if local is not None and len(local):
                self.record_priority(
                    "local_first",
                    name,
                    local.bid_id,
                    local.mw,
                    local.mw,
                    taken(dispatch, local.bid_id),
                )
                dispatch = pd.concat([dispatch, local], ignore_index=True)
        met = float(dispatch.loc[dispatch.buyer == "tso", "mw"].sum())
        if wanted - met > 1e-6:
            self.sim.record_event(
                "interface_shortfall", f"{name}: {wanted - met:.3f} MW of the TSO's target unmet"
            )
        return dispatch, max(0.0, wanted - met)
