"""The TSO: forecasts its load and balancing need, and calls its markets to schedule and clear."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd

from market_sim.columns import Columns, column_values, numbers, text
from market_sim.config import ScenarioConfig
from market_sim.grid.constraints import BidLayout
from market_sim.grid.network import DistributionNetwork, element_positions, kept_for_layout
from market_sim.grid.powerflow import PowerFlowDetail
from market_sim.grid.state import injections_from_table
from market_sim.markets.balancing import BalancingResult
from market_sim.markets.central import (
    DistributionModel,
    IntegratedResult,
    integrated_clearing,
    numbered_rows,
)
from market_sim.markets.offers import bid_offer_columns
from market_sim.markets.transmission import TransmissionNetwork
from market_sim.markets.tso_markets import Rows, TsoMarkets, TsoPlan
from market_sim.types import DOWN, ELEMENT_TABLES, UP


class TSO(mesa.Agent):
    """Transmission system operator and central market operator.

    Its markets (:class:`~market_sim.markets.tso_markets.TsoMarkets`) are built once here and
    updated every period; the agent decides what to plan for and when to clear. The period's
    plan is handed to it with every clearing, never kept between calls.
    """

    name = "tso"

    def __init__(
        self, model: mesa.Model, config: ScenarioConfig, network: TransmissionNetwork
    ) -> None:
        super().__init__(model)
        self.network = network
        #: DSO name -> the transmission bus its offers and payments are located at
        self.interface_buses = {d.name: d.interface_bus for d in config.dsos}
        self.markets = TsoMarkets(
            network,
            ramp_mw=config.transmission.ramp_fraction * network.generators.p_max_mw.to_numpy(),
            reserve_mw={
                UP: config.transmission.reserve_up_mw,
                DOWN: config.transmission.reserve_down_mw,
            },
            voll_eur_per_mwh=config.voll_eur_per_mwh,
        )
        self.error_config = config.forecast_error

    def plan(
        self,
        load_factor: float,
        dso_injection_mw: dict[int, float],
        error: float,
        rng: np.random.Generator,
    ) -> tuple[TsoPlan, float]:
        """Least-cost TER schedule for the forecast and the period's balancing need.

        Transmission load is the case's load scaled by ``load_factor``, less the forecast net
        injection of each DSO area at its interface bus. The need is the forecast error: an AR(1)
        share of the load (``error`` is its previous value), spread over the buses in proportion
        to their load. Returns the plan and the error's new value.
        """
        load = self.network.base_load_mw * load_factor
        # the DSOs' interface buses are distinct: one subtraction each, looked up at once
        load[self.network.bus_position(list(dso_injection_mw))] -= list(dso_injection_mw.values())
        schedule = self.markets.schedule(load)
        rho, sd = self.error_config.autocorrelation, self.error_config.sd_fraction
        error = rho * error + np.sqrt(1 - rho**2) * sd * rng.normal()
        positive = np.clip(load, 0.0, None)
        return TsoPlan(schedule, error * positive, load), error  # error * total load * bus share

    def forget_warm_starts(self) -> None:
        """Solve the next period from scratch, as a freshly built TSO would (a checkpoint)."""
        self.markets.forget_warm_starts()

    def ter_offers(self, plan: TsoPlan) -> pd.DataFrame:
        """The generators' balancing offers around the period's schedule."""
        return self.markets.ter_offers(plan.schedule)

    def clear(
        self,
        plan: TsoPlan,
        der_offers: Columns,
        der_rows: Rows | None = None,
        der_labels: Columns | None = None,
    ) -> BalancingResult:
        """Clear TER and DER offers against the period's need, with transmission line limits.

        ``der_offers``: a table, or its columns as arrays (:func:`~.offers.bid_offer_columns`).
        ``der_rows = (A, b)``: extra constraints ``A q <= b`` on the DER offers (columns in
        the order of ``der_offers``), the TSO-managed model's distribution constraints;
        ``der_labels``: what each row limits.
        """
        return self.markets.clear(plan, der_offers, der_rows, der_labels)

    def clear_bids(self, plan: TsoPlan, bids: pd.DataFrame) -> BalancingResult:
        """Clear individual (validated) bids, each offered at its DSO's interface bus."""
        return self.clear(plan, bid_offer_columns(bids, self.interface_buses))

    def cost_with_all(self, plan: TsoPlan, bids: pd.DataFrame) -> float:
        """Balancing cost (EUR/h) had the TSO had every one of these bids: the reference for
        what a DSO taking first costs it."""
        return self.markets.cost_with_all(plan, bid_offer_columns(bids, self.interface_buses))

    def clear_integrated(
        self,
        plan: TsoPlan,
        bids: pd.DataFrame,
        operational_data: dict[str, pd.DataFrame],
        dsos: dict,
        flows: dict[str, PowerFlowDetail] | None = None,
    ) -> tuple[BalancingResult, IntegratedResult]:
        """TSO-managed: validate and dispatch in one problem over every reporting DSO network.

        The TSO holds the DSOs' network models but sees only the state each reported; it
        cannot use DSO assets (taps stay as reported). ``flows``: the power flow of a reported
        state where the caller has it (the one its DSO measured the report from,
        :meth:`~.dso.DSO.operational_data`); else it is solved here.
        """
        book, ends = _dso_book(bids, list(dsos))
        columns = _layout_columns(book)
        models = [
            DistributionModel.at(
                name,
                dso.network,
                injections_from_table(dso.network, operational_data[name]),
                numbered_rows(book, slice(lo, hi)),
                dso.limits,
                point=(flows or {}).get(name),
                layout=_layout(dso.network, *(c[lo:hi] for c in columns)),
            )
            for (name, dso), lo, hi in zip(dsos.items(), ends[:-1], ends[1:], strict=True)
        ]
        return integrated_clearing(
            models,
            lambda b, rows, labels: self.clear(
                plan, bid_offer_columns(b, self.interface_buses), rows, labels
            ),
            book,
        )


def _dso_book(bids: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, list[int]]:
    """The bids offering more than 1e-9 MW grouped by DSO (in the order of ``names``),
    numbered from 0, and where each DSO's rows begin (then where the last end): each DSO's
    bids are a slice of it, and the clearing takes it whole, where a selection per DSO and
    their concatenation again cost four times as much. Bids that are such a book already
    (every one offers, the DSOs' in that order, numbered from 0: the quickstart's) are
    returned as they are: the selection would copy every column for nothing."""
    area, positive = text(bids, "dso"), numbers(bids, "mw") > 1e-9
    mine = [np.flatnonzero((area == name) & positive) for name in names]
    ends = np.cumsum([0, *(len(rows) for rows in mine)]).tolist()
    rows = np.concatenate([np.zeros(0, np.intp), *mine])
    if _in_order(rows, len(bids)) and bids.index.equals(pd.RangeIndex(len(bids))):
        return bids, ends
    return numbered_rows(bids, rows), ends


def _in_order(rows: np.ndarray, n: int) -> bool:
    """Whether ``rows`` are the positions 0, 1, ..., n - 1 (the whole table, in order)."""
    return len(rows) == n and bool((rows == np.arange(n)).all())


def _layout_columns(book: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """The book's columns a :class:`~.constraints.BidLayout` is made of (element table, its
    label, direction, MW), read once for every DSO's slice, as arrays (a column's Series is
    built on a frame's first access to it, and is read only here)."""
    return (
        text(book, "element"),
        column_values(book, "element_index"),
        text(book, "direction"),
        numbers(book, "mw"),
    )


def _layout(
    dn: DistributionNetwork,
    tables: np.ndarray,
    labels: np.ndarray,
    directions: np.ndarray,
    mw: np.ndarray,
) -> BidLayout:
    """``BidLayout.of(dn, book, rows)`` of one DSO's rows, from the book's columns."""
    return BidLayout.at(tables, _positions(dn, tables, labels), directions, mw)


def _positions(dn: DistributionNetwork, tables: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """:func:`~.network.element_positions` of a DSO's bids (read-only), kept with the network
    for the last bids seen (:func:`~.network.kept_for_layout`, as the state table's rows): the
    same DERs bid in the same order in most periods (72 of 78 on the quickstart), and comparing
    the columns costs a third of the look-up."""

    def positions(_: list[pd.Index]) -> np.ndarray:
        found = element_positions(dn, tables, labels)
        found.flags.writeable = False  # shared by the layouts of every period that hits
        return found

    return kept_for_layout(dn, "bid_positions", ELEMENT_TABLES, (tables, labels), positions)
