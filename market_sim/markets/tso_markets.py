"""The TSO's markets of one run: the energy schedule, the balancing market and its offer book.

The TSO agent decides (what load to schedule, what balancing need to expect) and calls these;
how the markets are put together lives here: which offers form the book (the generators' TER
offers around the schedule, then the DER offers), the reserve requirement as rows on that book,
and the stacking of the TSO-managed model's distribution rows below them. Constraint matrices
are scipy.sparse: distribution rows over a few thousand bids are mostly zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from market_sim.columns import Columns, array_of, concat_frames, length, new_frame, numbers, text
from market_sim.markets.balancing import BalancingMarket, BalancingResult, OfferBook
from market_sim.markets.offers import OFFER_COLUMNS, TER_OFFER_COLUMNS, TerSteps, empty_offers
from market_sim.markets.persistent import Matrix
from market_sim.markets.schedule import EnergySchedule, ScheduleResult
from market_sim.markets.transmission import TransmissionNetwork
from market_sim.types import typed_frame

#: Rows ``A q <= b`` on the accepted MW of an offer book.
Rows = tuple[Matrix, np.ndarray]
#: What a row is: its kind (reserve_up, reserve_down, or a linearised distribution limit:
#: vmax, vmin, line, trafo), the DSO and the pandapower element it limits ("" / -1: none).
ROW_LABEL_COLUMNS = ("kind", "dso", "element", "element_index")


@dataclass(frozen=True)
class TsoPlan:
    """The TSO's plan for a period: the energy schedule, the balancing need per bus (MW,
    aligned with ``network.bus_ids``; positive: more injection needed) and the bus loads the
    schedule was solved for (MW consumed, DSO areas' forecast net injection taken off)."""

    schedule: ScheduleResult
    need_mw: np.ndarray
    load_mw: np.ndarray


class TsoMarkets:
    """Both transmission markets, built once per run and updated every period.

    ``ramp_mw``: each generator's balancing range per direction (aligned with
    ``network.generators``); ``reserve_mw``: direction -> MW the balancing market must leave
    unactivated. ``voll_eur_per_mwh`` prices what either market cannot balance otherwise: the
    balancing market's unserved energy (up or down) and the schedule's units run below their
    minimum outputs (:mod:`market_sim.markets.schedule`).
    """

    def __init__(
        self,
        network: TransmissionNetwork,
        ramp_mw: np.ndarray,
        reserve_mw: dict[str, float],
        voll_eur_per_mwh: float,
    ) -> None:
        self.network = network
        self.ramp_mw = ramp_mw
        self.reserve_mw = reserve_mw
        self.energy = EnergySchedule(network, relief_eur_per_mwh=voll_eur_per_mwh)
        self.balancing = BalancingMarket(network, voll_eur_per_mwh)
        self._reserve_labels = reserve_labels(reserve_mw)
        #: the TER offers' steps, fixed for the run (a period computes their MW and prices)
        self._ter_steps = TerSteps.of(network)
        #: the last schedule's TER offers, as columns and (once asked for) as a table: a
        #: period asks for them more than once (its clearings, the sharing of bids with the
        #: DSOs), and they depend on the schedule only
        self._ter: tuple[ScheduleResult, dict[str, Any], pd.DataFrame | None] | None = None

    def forget_warm_starts(self) -> None:
        """Solve the next period from scratch, as freshly built markets would (a checkpoint)."""
        self.energy.forget_warm_start()
        self.balancing.forget_warm_start()

    def schedule(self, load_mw: np.ndarray) -> ScheduleResult:
        """Least-cost TER schedule for the bus loads ``load_mw``."""
        return self.energy.solve(load_mw)

    def ter_offers(self, schedule: ScheduleResult) -> pd.DataFrame:
        """The generators' balancing offers around ``schedule`` (none if it failed)."""
        columns = self._ter_columns(schedule)
        if isinstance(columns, pd.DataFrame):
            return columns
        if self._ter[2] is None:
            self._ter = (schedule, columns, typed_frame(columns, TER_OFFER_COLUMNS))
        return self._ter[2]

    def _ter_columns(self, schedule: ScheduleResult) -> Columns:
        """:meth:`ter_offers` as columns (:meth:`~.offers.TerSteps.columns`), which the
        clearing reads into its book without the table in between (none if it failed)."""
        if not schedule.ok:
            return empty_offers()
        if self._ter is None or self._ter[0] is not schedule:
            self._ter = (schedule, self._ter_steps.columns(schedule, self.ramp_mw), None)
        return self._ter[1]

    def clear(
        self,
        plan: TsoPlan,
        der_offers: Columns,
        der_rows: Rows | None = None,
        der_labels: Columns | None = None,
    ) -> BalancingResult:
        """Clear TER and DER offers against the plan's need, with transmission line limits.

        ``der_offers``: a table, or its columns as arrays (:func:`~.offers.bid_offer_columns`).
        ``der_rows = (A, b)``: extra constraints ``A q <= b`` on the DER offers (columns in the
        order of ``der_offers``; dense or scipy.sparse), the TSO-managed model's distribution
        constraints, and ``der_labels`` what each of them is (:data:`ROW_LABEL_COLUMNS`). The
        result carries the book as cleared, the reserve shortfall and every row's label.
        """
        ter = self._ter_columns(plan.schedule)
        book = offer_book(ter, der_offers)
        reserve, shortfall = book_reserve_rows(book.mw, book.direction, self.reserve_mw)
        rows = stack_rows(reserve, length(ter), der_rows)
        flow = self._base_flow(plan.schedule)
        result = self.balancing.clear_book(book, plan.need_mw, flow, rows)
        labels = row_label_columns(self._reserve_labels, der_labels, len(rows[1]))
        return replace(result, reserve_shortfall_mw=shortfall, row_labels=labels)

    def cost_with_all(self, plan: TsoPlan, der_offers: pd.DataFrame) -> float:
        """Balancing cost (EUR/h) with every one of ``der_offers``: the reference for what a
        DSO taking DER first costs the TSO. NaN if that clearing fails."""
        result = self.clear(plan, der_offers)
        return result.cost_eur if result.ok else float("nan")

    def _base_flow(self, schedule: ScheduleResult) -> np.ndarray:
        """Branch flows of the schedule (zero if it failed: then only the balancing is cleared)."""
        if schedule.ok:
            return schedule.flow_mw
        return np.zeros(self.network.n_branches)


#: The columns and types of the DER offers that the engine makes (:func:`~.offers.bid_offers`;
#: a DSO's curves have no ``device``), which :func:`balancing_book` puts together with the TER
#: offers (:data:`~.offers.TER_OFFER_COLUMNS`) from their arrays.
DER_TYPES = {
    "offer_id": "int64",
    "bus": "int64",
    "direction": "object",
    "mw": "float64",
    "price_eur_per_mwh": "float64",
    "device": "int64",
}
CURVE_TYPES = {c: t for c, t in DER_TYPES.items() if c != "device"}


def balancing_book(ter: Columns, der: Columns) -> pd.DataFrame:
    """The balancing market's book: the TER offers, then the DER offers, as
    ``pd.concat([empty_offers(), ter, der], ignore_index=True)`` makes it (the columns
    :data:`~.offers.OFFER_COLUMNS`, then ``element``, NA for DER, then ``device``, NaN for
    TER): the table of :func:`offer_book`."""
    return offer_book(ter, der).table


def offer_book(ter: Columns, der: Columns) -> OfferBook:
    """The book of :func:`balancing_book` with its columns as arrays, for the clearing.

    Built from the columns' arrays where both tables (DataFrames or their columns) have rows
    and the types the engine makes (:data:`~.offers.TER_OFFER_COLUMNS`; :data:`DER_TYPES` or
    :data:`CURVE_TYPES`): the TSO builds a book at every clearing, and the concatenation and
    the reading back of its columns cost a tenth to a fifth of a clearing. Any other tables
    are concatenated, and the columns read from the result.
    """
    n_ter, n_der = length(ter), length(der)
    der_typed = _typed(der, DER_TYPES) or _typed(der, CURVE_TYPES)
    if not (n_ter and n_der and der_typed and _typed(ter, TER_OFFER_COLUMNS)):
        tables = [t if isinstance(t, pd.DataFrame) else pd.DataFrame(t) for t in (ter, der)]
        return OfferBook.of(pd.concat([empty_offers(), *tables], ignore_index=True))
    # (the TER directions' strings come out as the objects of the DER directions)
    book = {
        c: np.concatenate([text(ter, c), text(der, c)])
        if c == "direction"
        else np.concatenate([numbers(ter, c, CURVE_TYPES[c]), numbers(der, c, CURVE_TYPES[c])])
        for c in OFFER_COLUMNS
    }
    # the TER offers' pandas strings taken as they are, NA for DER: a new string array of
    # their objects checks each value again, at twice the cost
    at = np.concatenate([np.arange(n_ter), np.full(n_der, -1)])
    book["element"] = array_of(ter, "element").take(at, allow_fill=True)
    device = np.full(n_ter + n_der, -1, dtype=np.int64)
    if "device" in der:
        book["device"] = np.concatenate([np.full(n_ter, np.nan), numbers(der, "device")])
        device[n_ter:] = numbers(der, "device", np.int64)
    return OfferBook(
        table=new_frame(book),
        offer_id=book["offer_id"],
        bus=book["bus"],
        direction=book["direction"],
        mw=book["mw"],
        price=book["price_eur_per_mwh"],
        device=device,
    )


def _typed(table: Columns, types: dict[str, str]) -> bool:
    """Whether ``table`` has exactly the columns of ``types``, in that order, of those types."""
    return list(table) == list(types) and all(table[c].dtype == t for c, t in types.items())


def reserved(reserve_mw: dict[str, float]) -> list[str]:
    """The directions with a reserve, in the order of their rows."""
    return [direction for direction, reserve in reserve_mw.items() if reserve > 0]


def reserve_labels(reserve_mw: dict[str, float]) -> pd.DataFrame:
    """What the reserve rows of :func:`stack_rows` are: ``reserve_up`` / ``reserve_down`` (no
    DSO, no element). Text as objects even with no reserve (an empty list would make floats),
    so that :func:`row_label_columns` joins them with the DER rows' labels by their arrays."""
    directions = reserved(reserve_mw)
    return pd.DataFrame(
        {
            "kind": np.array([f"reserve_{d}" for d in directions], dtype=object),
            "dso": "",
            "element": "",
            "element_index": np.full(len(directions), -1, dtype=np.int64),
        }
    )


def row_label_columns(reserve: pd.DataFrame, der_labels: Columns | None, n_rows: int) -> Columns:
    """What each row of :func:`stack_rows` is: the reserve rows' labels
    (:func:`reserve_labels`), then the DER rows' own labels. A table where they are one
    (joined); where they are numpy arrays, as the TSO-managed clearing makes them, the columns
    joined with the reserve's arrays, and no table: the result's only reader, the record stage,
    reads them back as columns, and the table cost four fifths of the labels (59 us of
    a period's)."""
    if der_labels is None:
        labels = reserve
    elif isinstance(der_labels, pd.DataFrame):
        labels = concat_frames([reserve, der_labels])
    else:
        labels = {c: np.concatenate([array_of(reserve, c), der_labels[c]]) for c in der_labels}
    if length(labels) != n_rows or list(labels) != list(ROW_LABEL_COLUMNS):
        raise ValueError(f"{length(labels)} row labels {list(labels)} for {n_rows} rows")
    return labels


def reserve_rows(offers: pd.DataFrame, reserve_mw: dict[str, float]) -> tuple[Rows, float]:
    """Reserve: the offers of a direction may be activated only up to what leaves the reserve
    unused (``sum q <= sum mw - reserve``), one row per direction with a reserve. Also returns
    what the offers cannot hold back: the reserve shortfall (MW)."""
    return book_reserve_rows(numbers(offers, "mw"), text(offers, "direction"), reserve_mw)


def book_reserve_rows(
    mw: np.ndarray, direction_of: np.ndarray, reserve_mw: dict[str, float]
) -> tuple[Rows, float]:
    """:func:`reserve_rows` of a book's ``mw`` and ``direction`` arrays (a clearing has them
    as arrays already, :class:`~.balancing.OfferBook`)."""
    cols, bounds, shortfall = [], [], 0.0
    for direction in reserved(reserve_mw):
        reserve = reserve_mw[direction]
        mine = (direction_of == direction).astype(float)
        room = float(mw @ mine)
        shortfall += max(0.0, reserve - room)
        cols.append(np.flatnonzero(mine))
        bounds.append(max(0.0, room - reserve))
    indptr = np.zeros(len(cols) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(c) for c in cols], dtype=np.int64)
    indices = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    matrix = sparse.csr_array((np.ones(len(indices)), indices, indptr), shape=(len(cols), len(mw)))
    return (matrix, np.array(bounds, dtype=float)), shortfall


def stack_rows(reserve: Rows, n_ter: int, der_rows: Rows | None) -> Rows:
    """The reserve rows over the whole book, then the DER rows shifted past the ``n_ter`` TER
    offers that come first in the book.

    The CSR arrays are joined as they are (scipy's ``hstack`` and ``vstack`` of the same
    blocks store the same entries, in the same order, at several times the cost)."""
    if der_rows is None or not len(der_rows[1]):
        return reserve
    top, der = _csr(reserve[0]), _csr(der_rows[0])
    if top.shape[1] != n_ter + der.shape[1]:
        raise ValueError(f"{der.shape[1]} DER columns after {n_ter} TER offers: not {top.shape[1]}")
    matrix = sparse.csr_array(
        (
            np.concatenate([top.data, der.data]),
            np.concatenate([top.indices, der.indices + n_ter]),
            np.concatenate([top.indptr, top.nnz + der.indptr[1:]]),
        ),
        shape=(top.shape[0] + der.shape[0], top.shape[1]),
    )
    return matrix, np.concatenate([reserve[1], np.asarray(der_rows[1], dtype=float)])


def _csr(matrix: Matrix) -> sparse.csr_array | sparse.csr_matrix:
    """``matrix`` as CSR: itself where it is CSR already (array or matrix: :func:`stack_rows`
    reads only its arrays and shape), else converted."""
    if isinstance(matrix, sparse.csr_array | sparse.csr_matrix):
        return matrix
    return sparse.csr_array(matrix)
