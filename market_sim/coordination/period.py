"""What a coordination model works with in one period, and what it hands on.

A coordination model sees the period through a narrow :class:`PeriodContext` (send and receive
messages, wait for gates, time its computations, report events) and the agents it routes
between (:class:`Parties`). Its inputs are the values the stages before it produced
(:class:`PeriodInputs`) and it returns everything the stages after it need as one
:class:`PeriodOutcome`: no agent attribute is written by one stage for another to read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import simpy

from market_sim.columns import Columns, array_of, as_frame, concat_frames, length, numbers
from market_sim.markets.tso_markets import TsoPlan
from market_sim.messages import Kind, Message
from market_sim.schedule import PeriodClock, Post
from market_sim.types import Injections

if TYPE_CHECKING:
    from market_sim.agents.aggregator import Aggregator
    from market_sim.agents.asset_owner import AssetOwner
    from market_sim.agents.dso import DSO
    from market_sim.agents.tso import TSO
    from market_sim.markets.balancing import BalancingResult

VALIDATION_COLUMNS = ["bid_id", "validator", "validated_mw", "reason"]


@dataclass(frozen=True)
class Step:
    """One step of a model: ``sender`` -> ``receiver`` (roles), the paper's label (Figs. 1-3)."""

    label: str
    sender: str
    receiver: str
    kind: Kind
    does: str


@dataclass(frozen=True)
class Parties:
    """The agents a coordination model routes messages between; ``owners``: the asset
    owner behind each independent DSO, by the iDSO's name."""

    tso: TSO
    dsos: Mapping[str, DSO]
    aggregators: Mapping[str, Aggregator]
    owners: Mapping[str, AssetOwner] = field(default_factory=dict)


@dataclass(frozen=True)
class PeriodInputs:
    """What gate opening produced: the coordination steps' inputs.

    ``forecasts``: each DSO's baseline operating point of the period (where it validates, and
    what it reports to the TSO in tso_managed); ``plan``: the TSO's energy schedule and
    balancing need.
    """

    period: int
    bids: pd.DataFrame
    forecasts: Mapping[str, Injections]
    plan: TsoPlan


@dataclass
class PeriodRecords:
    """Rows for the results tables that the coordination steps produce (named columns).

    The tables (priority, flexibility areas, operational data) are kept as the steps made them,
    without the period's column: the record stage adds it (and the DSO's name) as constants,
    which costs far less than a column assigned to each small table.
    """

    validation_runs: list[dict[str, Any]] = field(default_factory=list)
    clearing_runs: list[dict[str, Any]] = field(default_factory=list)
    priority: list[pd.DataFrame] = field(default_factory=list)
    flexibility_areas: list[pd.DataFrame] = field(default_factory=list)
    #: the network state each DSO reported (step 1b of tso_managed), as the TSO received it,
    #: by the DSO's name
    operational_data: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: what the priority rule cost the side that did not go first
    tso_extra_cost_eur_per_h: float = 0.0
    dso_shortfall_mw: float = 0.0


class PeriodContext:
    """The coordination model's window on one period: messages, gates, timing and events.

    ``timer(role, stage, func, *args)`` calls ``func`` and records its wall time;
    ``on_event(kind, message)`` records a failure of this period (the run goes on).
    """

    def __init__(
        self,
        clock: PeriodClock,
        post: Post,
        timer: Callable[..., Any],
        on_event: Callable[[str, str], None],
    ) -> None:
        self.clock = clock
        self.records = PeriodRecords()
        self._post = post
        self._timer = timer
        self._on_event = on_event

    def send(
        self,
        step: Step,
        tables: Mapping[tuple[str, str], Columns],
        gate_s: float | None = None,
    ) -> simpy.Event:
        """One message per (sender, receiver) of a step (a table, or its columns:
        :class:`~market_sim.messages.Message`); the event fires when all arrived."""
        messages = [
            Message(self.clock.period, step.label, s, r, step.kind, t)
            for (s, r), t in tables.items()
        ]
        return self._post.send(messages, gate_s)

    def inbox(self, receiver: str, kind: Kind) -> dict[str, Columns]:
        """Payloads of the messages of a kind that reached ``receiver``, by sender."""
        return {m.sender: m.payload for m in self._post.take(receiver, kind)}

    def wait_until(self, time_s: float) -> simpy.Event:
        return self._post.wait_until(time_s)

    def timed(self, role: str, stage: str, func: Callable[..., Any], *args: Any) -> Any:
        return self._timer(role, stage, func, *args)

    def event(self, kind: str, message: str) -> None:
        self._on_event(kind, message)


@dataclass(frozen=True)
class PeriodOutcome:
    """What the coordination steps of one period decided, for delivery, settlement and KPIs.

    ``validation``: one row per bid and validator; ``clearing``: the TSO's balancing market
    result (its offers as cleared, prices, reserve shortfall); ``dispatch``: ``bid_id``, ``mw``,
    ``buyer`` (tso or a DSO's name) of DER as received by their aggregators;
    ``operating_points``: each DSO's operating point to deliver at (its forecast, with the taps
    it chose when it validated with OLTC); ``interface_shortfall_mw``: what DSOs could not
    deliver of the TSO's aggregated dispatch or interface target; ``records``: rows for the
    results tables.
    """

    validation: pd.DataFrame
    clearing: BalancingResult | None
    dispatch: pd.DataFrame
    operating_points: Mapping[str, Injections]
    records: PeriodRecords
    interface_shortfall_mw: float = 0.0


def no_validation() -> pd.DataFrame:
    """A validation table of no rows (object columns): a copy of one built once, since
    building a frame from column names costs a tenth of a millisecond, every period."""
    return _NO_VALIDATION.copy()


_NO_VALIDATION = pd.DataFrame(columns=VALIDATION_COLUMNS)


def validation_table(results: Iterable[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """The validation table of validators' tables (a validation result's table, or the rows
    made of it; their ``bid_id``, ``validated_mw`` and ``reason``), by validator, in order:
    what concatenating each one's rows gives
    (:meth:`~market_sim.coordination.base.CoordinationModel.validation_rows` and
    :func:`concat`), without ``pd.concat``'s planning or a frame per validator.

    Its columns are joined as numpy arrays of the tables' columns (ids, MW, reasons as Python
    objects), whose types ``pd.concat`` keeps; no rows give :func:`no_validation`.
    """
    parts = [(validator, table) for validator, table in results if len(table)]
    if not parts:
        return no_validation()
    columns = {
        c: np.concatenate(
            [
                np.full(len(table), validator, dtype=object)
                if c == "validator"
                else np.asarray(array_of(table, c))
                for validator, table in parts
            ]
        )
        for c in VALIDATION_COLUMNS
    }
    return pd.DataFrame(columns, copy=False)  # new arrays: pandas' copy would double the cost


def concat(tables: Iterable[Columns], like: pd.DataFrame) -> pd.DataFrame:
    """Concatenate received tables (or their columns: :func:`~.columns.concat_frames`); none
    gives an empty table shaped like ``like``.

    A single table indexed from 0 is handed on as it is (what ``pd.concat`` would copy), a
    single mapping as the table of its columns: no step writes into a table it received, and
    a copy of a bid book's text columns costs as much as the rest of a step.
    """
    frames = [t for t in tables if length(t)]
    if len(frames) == 1 and not isinstance(frames[0], pd.DataFrame):
        return as_frame(frames[0])
    if len(frames) == 1 and frames[0].index.equals(pd.RangeIndex(len(frames[0]))):
        return frames[0]
    return concat_frames(frames) if frames else like.iloc[0:0]


def as_dispatch(bid_id, mw, buyer: str = "tso") -> pd.DataFrame:
    """An individual dispatch table: bid_id, mw and who bought it (tso or a DSO's name).

    Its columns are copies of the arguments (:func:`as_dispatch_columns`), so the frame is built
    without copying again (pandas' copying constructor costs twice as much on a table of a few
    rows)."""
    return pd.DataFrame(as_dispatch_columns(bid_id, mw, buyer), copy=False)


def as_dispatch_columns(bid_id, mw, buyer: str = "tso") -> dict[str, np.ndarray]:
    """The columns of :func:`as_dispatch`'s table (copies of the arguments), for a reader of
    columns."""
    mw = np.array(mw, float)
    return {
        "bid_id": np.array(bid_id, np.int64),
        "mw": mw,
        "buyer": np.full(len(mw), buyer, dtype=object),
    }


def no_dispatch() -> pd.DataFrame:
    """An individual dispatch of no rows: a copy of one built once (as :func:`no_validation`)."""
    return _NO_DISPATCH.copy()


_NO_DISPATCH = as_dispatch([], [])


def accepted_none() -> pd.DataFrame:
    """An accepted-offers table with no rows (a failed or skipped clearing)."""
    return pd.DataFrame({"offer_id": pd.Series(dtype="int64"), "mw": pd.Series(dtype=float)})


def accepted_der(result: BalancingResult) -> pd.DataFrame:
    """Accepted DER offers (non-negative ids) with their MW; empty if the clearing failed."""
    if not result.ok:
        return accepted_none()
    offer_id, mw = _accepted_der(result)
    return pd.DataFrame({"offer_id": offer_id, "mw": mw}, copy=False)


def der_dispatch(result: BalancingResult) -> pd.DataFrame:
    """The TSO's individual dispatch (:func:`as_dispatch`) of its accepted DER offers; none
    if the clearing failed."""
    return pd.DataFrame(der_dispatch_columns(result), copy=False)  # new arrays: no copy


def der_dispatch_columns(result: BalancingResult) -> dict[str, np.ndarray]:
    """The columns of :func:`der_dispatch`'s table, for a dispatch that is only split into
    the aggregators' commands (:meth:`~.base.CoordinationModel.dispatch_to_der`), never read
    as a table: building it cost a third of the split."""
    return as_dispatch_columns(*_accepted_der(result)) if result.ok else as_dispatch_columns([], [])


def _accepted_der(result: BalancingResult) -> tuple[np.ndarray, np.ndarray]:
    """Ids and MW of the accepted DER offers (non-negative ids, above 1e-9 MW), new arrays.

    The columns are read as arrays (:func:`~market_sim.columns.numbers`): an attribute's
    Series, built on the frame's first access to it, cost more than the rest of a dispatch."""
    acc = result.accepted
    offer_id, mw = numbers(acc, "offer_id", np.int64), numbers(acc, "mw")
    der = (offer_id >= 0) & (mw > 1e-9)
    return offer_id[der], mw[der]
