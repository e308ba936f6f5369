"""What every coordination model shares: its declared steps and the period's outcome.

A coordination model is one module that declares its steps (who sends what to whom, with the
paper's step label) and runs them as a simpy process. Everything before (forecasts, bids) and
after (delivery, settlement, KPIs) is common and lives in :mod:`market_sim.model`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from market_sim.markets import priority
from market_sim.markets.local_market import LocalMarketResult
from market_sim.markets.offers import bid_offers
from market_sim.messages import Kind, Message
from market_sim.schedule import PeriodClock
from market_sim.types import ValidationResult

if TYPE_CHECKING:
    from market_sim.markets.balancing import BalancingResult
    from market_sim.model import MarketModel

VALIDATION_COLUMNS = ["bid_id", "validator", "validated_mw", "reason"]


@dataclass(frozen=True)
class Step:
    """One step of a model: ``sender`` -> ``receiver`` (roles), the paper's label (Figs. 1-3)."""

    label: str
    sender: str
    receiver: str
    kind: Kind
    does: str


@dataclass
class PeriodOutcome:
    """What the coordination steps of one period decided.

    ``validation``: one row per bid and validator; ``dispatch``: ``bid_id``, ``mw``, ``buyer``
    (tso or a DSO's name) of DER as received by their aggregators; ``clearing``: the TSO's
    balancing market result; ``interface_shortfall_mw``: what DSOs could not deliver of the
    TSO's aggregated dispatch or interface target.
    """

    validation: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=VALIDATION_COLUMNS)
    )
    clearing: BalancingResult | None = None
    dispatch: pd.DataFrame = field(default_factory=lambda: as_dispatch([], []))
    interface_shortfall_mw: float = 0.0


class CoordinationModel:
    """Base of the coordination models; subclasses declare ``steps`` and write ``run``."""

    name: ClassVar[str]
    steps: ClassVar[tuple[Step, ...]]

    def __init__(self, sim: MarketModel) -> None:
        self.sim = sim
        self.priority_effects = new_priority_effects()

    def run(self, clock: PeriodClock, bids: pd.DataFrame) -> Generator:
        """The model's steps for one period, as a simpy process returning a PeriodOutcome."""
        raise NotImplementedError

    # -- helpers shared by the models ----------------------------------------------------------
    def step(self, label: str) -> Step:
        return next(s for s in self.steps if s.label == label)

    def send(
        self,
        clock: PeriodClock,
        label: str,
        tables: dict[tuple[str, str], pd.DataFrame],
        gate_s: float | None = None,
        kind: Kind | None = None,
    ):
        """Send one message per (sender, receiver) of a step; returns the arrival event.

        ``kind`` picks one of the step's kinds where a step carries more than one.
        """
        kind = kind or self.step(label).kind
        return self.sim.post.send(
            [Message(clock.period, label, s, r, kind, t) for (s, r), t in tables.items()], gate_s
        )

    def inbox(self, receiver: str, kind: Kind) -> dict[str, pd.DataFrame]:
        """Payloads of the messages of a kind that reached ``receiver``, by sender."""
        return {m.sender: m.payload for m in self.sim.post.take(receiver, kind)}

    def dispatch_to_der(
        self,
        clock: PeriodClock,
        label: str,
        by_sender: dict[str, pd.DataFrame],
        bids: pd.DataFrame,
    ) -> Generator:
        """Send individual dispatch to the aggregators by the dispatch gate; they collect it.

        Every aggregator the sender serves gets a command, empty when none of its bids is
        used. Returns the dispatch (bid_id, mw) that reached the DER: a late one is lost.
        """
        located = bids[["bid_id", "aggregator", "dso", "direction"]]
        tables = {}
        for sender, dispatch in by_sender.items():
            table = dispatch[dispatch.mw > 1e-9].merge(located, on="bid_id")
            for agg in self.sim.aggregators.values():
                if sender == "tso" or sender in agg.dsos:
                    mine = table[table.aggregator == agg.name].drop(columns="aggregator")
                    tables[(sender, agg.name)] = mine.reset_index(drop=True)
        yield self.send(clock, label, tables, clock.dispatch_gate)
        received = [
            agg.receive_dispatch(list(self.inbox(agg.name, Kind.DISPATCH).values()))
            for agg in self.sim.aggregators.values()
        ]
        return concat(received, as_dispatch([], []))

    def validation_rows(
        self, validator: str, result: ValidationResult, network: str | None = None
    ) -> pd.DataFrame:
        """Validation table rows of one validator; its run is recorded, a failure is an event."""
        if not result.converged:
            self.sim.record_event("validation_failed", f"{validator}: {result.message}")
        self.sim.recorder.add(
            "validation_runs",
            validation_runs(self.sim.period, validator, network or validator, result),
        )
        return result.table.assign(validator=validator)[VALIDATION_COLUMNS]

    def clear_bids(self, usable: pd.DataFrame) -> tuple[BalancingResult, pd.DataFrame]:
        """The TSO clears individual bids at their DSO's interface bus; returns the clearing
        and the DER dispatch (bid_id, mw)."""
        interface = {n: d.interface_bus for n, d in self.sim.dsos.items()}
        clearing = self.clear_and_record(bid_offers(usable, interface))
        accepted = accepted_der(clearing)
        return clearing, as_dispatch(accepted.offer_id, accepted.mw)

    # -- the DSOs' own needs (config: dso_market) --------------------------------------------
    def dso_requests(self, validated: dict[str, pd.DataFrame]) -> dict[str, LocalMarketResult]:
        """Each DSO's least-cost purchase of relief for its predicted violations."""
        cfg = self.sim.config.dso_market
        if not cfg.enabled:
            return {}
        return {
            name: self.sim.timed(
                name,
                "local_market",
                self.sim.dsos[name].local_market,
                table,
                cfg.violation_penalty_eur_per_h,
            )
            for name, table in validated.items()
        }

    def share(
        self,
        usable: pd.DataFrame,
        requests: dict[str, LocalMarketResult],
        clear,
        tso_need_mw: float | None = None,
        tso_cost=None,
    ) -> tuple[object, pd.DataFrame]:
        """Serve the TSO (through ``clear``) and the DSOs' requests from the same validated bids.

        The configured priority rule decides (:func:`market_sim.markets.priority.share`, which
        documents ``clear``, ``tso_need_mw`` and ``tso_cost``). Records who got what (the
        ``priority`` table), what the rule cost the side that did not go first, and a failed
        priority LP as an event. Returns the TSO's result and the whole dispatch (buyer tso or
        a DSO's name).
        """
        sim = self.sim
        sharing = priority.share(
            sim.config.dso_market.priority,
            usable,
            requests,
            clear,
            sim.tso.ter_offers(),
            float(sim.tso.need_mw.sum()),
            sim.config.voll_eur_per_mwh,
            tso_need_mw,
            tso_cost,
        )
        if not sharing.ok:
            sim.record_event("priority_failed", sharing.message)
        self.priority_effects["tso_extra_cost_eur_per_h"] += sharing.tso_extra_cost_eur_per_h
        self.priority_effects["dso_shortfall_mw"] += sharing.dso_shortfall_mw
        sim.recorder.add("priority", sharing.priority_rows.assign(period=sim.period))
        return sharing.result, sharing.dispatch

    def record_priority(self, rule, dso, bid_ids, requested, dso_mw, tso_mw) -> None:
        """Rows of the ``priority`` table: who got each contested or used DER of a DSO."""
        rows = priority.priority_rows(rule, dso, bid_ids, requested, dso_mw, tso_mw)
        self.sim.recorder.add("priority", rows.assign(period=self.sim.period))

    def clear_and_record(self, offers: pd.DataFrame) -> BalancingResult:
        """The TSO's clearing; a failed solve is an event and dispatches nothing."""
        result = self.sim.timed("tso", "clearing", self.sim.tso.clear, offers)
        self.record_clearing(result)
        return result

    def record_clearing(
        self, result: BalancingResult, distribution_rows: int = 0, rounds: int = 1
    ) -> None:
        """The ``clearing_runs`` row of the period; a failed solve is also an event."""
        if not result.ok:
            self.sim.record_event("clearing_failed", result.message)
        self.sim.recorder.add(
            "clearing_runs",
            [
                (
                    self.sim.period,
                    result.ok,
                    result.n_variables,
                    result.n_constraints,
                    distribution_rows,
                    rounds,
                )
            ],
        )


def validation_runs(
    period: int, validator: str, network: str, result: ValidationResult
) -> list[tuple]:
    """One ``validation_runs`` row per direction from a validation result's info."""
    info = result.info
    rows = []
    for direction, entry in sorted(info.get("directions", {}).items()):
        rows.append(
            (
                period,
                validator,
                network,
                info.get("method", ""),
                info.get("fairness", ""),
                direction,
                entry.get("offered_mw", 0.0),
                entry.get("validated_mw", 0.0),
                entry.get("jain", np.nan),
                entry.get("min_share", np.nan),
                bool(entry.get("converged", result.converged)),
                result.iterations,
                int(entry.get("lp_solves", 0)),
                "; ".join(entry.get("binding", [])),
            )
        )
    return rows


def new_priority_effects() -> dict[str, float]:
    """What a period's priority rule cost the side that did not go first."""
    return {"tso_extra_cost_eur_per_h": 0.0, "dso_shortfall_mw": 0.0}


def accepted_der(result: BalancingResult) -> pd.DataFrame:
    """Accepted DER offers (non-negative ids) with their MW; empty if the clearing failed."""
    if not result.ok:
        return accepted_none()
    acc = result.accepted
    return acc[(acc.offer_id >= 0) & (acc.mw > 1e-9)][["offer_id", "mw"]].reset_index(drop=True)


def concat(tables: list[pd.DataFrame], like: pd.DataFrame) -> pd.DataFrame:
    """Concatenate received tables; an empty list gives an empty table shaped like ``like``."""
    frames = [t for t in tables if len(t)]
    return pd.concat(frames, ignore_index=True) if frames else like.iloc[0:0]


def as_dispatch(bid_id, mw, buyer: str = "tso") -> pd.DataFrame:
    """An individual dispatch table: bid_id, mw and who bought it (tso or a DSO's name)."""
    mw = np.asarray(mw, float)
    return pd.DataFrame(
        {
            "bid_id": np.asarray(bid_id, np.int64),
            "mw": mw,
            "buyer": np.full(len(mw), buyer, dtype=object),
        }
    )


def accepted_none() -> pd.DataFrame:
    """An accepted-offers table with no rows (a failed or skipped clearing)."""
    return pd.DataFrame({"offer_id": pd.Series(dtype="int64"), "mw": pd.Series(dtype=float)})
