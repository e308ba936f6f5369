"""The record stage: a period's values written as rows of the results tables.

A stage hands the :class:`~market_sim.results.Recorder` its rows as column arrays named by the
documented columns (:data:`market_sim.tables.TABLES`), the period and a DSO's name as constants
over them; the recorder keeps them as arrays and builds the typed tables once per chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from market_sim.columns import column_values, numbers
from market_sim.coordination.period import PeriodOutcome
from market_sim.delivery import Delivered
from market_sim.grid.injections import injections_columns
from market_sim.markets.balancing import TIE_BREAK_EUR_PER_MWH, BalancingResult
from market_sim.markets.schedule import schedule_dispatch
from market_sim.markets.transmission import TransmissionNetwork
from market_sim.markets.tso_markets import TsoPlan
from market_sim.results import Recorder
from market_sim.tables import column_dtypes
from market_sim.types import Injections, PowerFlowResult
from market_sim.wear import Wear

#: The columns of ``balancing_offers`` an offer book has as they are.
OFFER_COLUMNS = ("offer_id", "bus", "direction", "mw", "price_eur_per_mwh")
#: The offer book's resource kinds as text objects, shared by every row that has them.
RESOURCES = {kind: np.array(kind, dtype=object) for kind in ("ter", "der")}
#: The columns of ``balancing_rows`` the clearing labels each row with.
ROW_LABELS = tuple(column_dtypes("balancing_rows", without=("period", "row", "rhs")))


def record_outcome(recorder: Recorder, period: int, outcome: PeriodOutcome) -> None:
    """The rows the coordination steps produced, with the period (and the reporting DSO)."""
    records = outcome.records
    recorder.add("validation_runs", records.validation_runs)
    recorder.add("clearing_runs", records.clearing_runs)
    for table in records.priority:
        recorder.add_frame("priority", table, period=period)
    for table in records.flexibility_areas:
        recorder.add_frame("flexibility_areas", table, period=period)
    for name, table in records.operational_data.items():
        recorder.add_frame("operational_data", table, period=period, dso=name)


def record_prices(
    recorder: Recorder, period: int, market: str, buses: np.ndarray, prices: np.ndarray
) -> None:
    """A market's price at every transmission bus."""
    columns = {"bus": np.asarray(buses, dtype=np.int64), "price_eur_per_mwh": prices}
    recorder.add_columns("prices", columns, period=period, market=market)


def grid_row(period: int, dso: str, pf: PowerFlowResult) -> tuple:
    """The ``grid`` row of one network's power flow, in the table's column order."""
    return (
        period,
        dso,
        pf.converged,
        pf.vm_min_pu,
        pf.vm_max_pu,
        pf.max_line_loading_percent,
        pf.max_trafo_loading_percent,
        pf.n_voltage_violations,
        pf.n_line_violations,
        pf.n_trafo_violations,
        pf.interface_p_mw,
        pf.interface_q_mvar,
    )


def record_delivery(
    recorder: Recorder, period: int, networks: Mapping, delivered: Mapping[str, Delivered]
) -> None:
    """Each DSO network's delivered injections and power-flow summary."""
    for name, d in delivered.items():
        columns = injections_columns(networks[name], d.injections)
        recorder.add_columns("injections", columns, period=period, dso=name)
        recorder.add_row("grid", grid_row(period, name, d.power_flow))


def record_wear(recorder: Recorder, period: int, wear: Mapping[str, Wear]) -> None:
    """Each DSO network's transformers' aging rows after delivery."""
    for w in wear.values():
        recorder.add_columns("aging", {"trafo": w.trafo, **w.columns}, period=period, dso=w.dso)


def record_frames(recorder: Recorder, period: int, frames: Mapping[str, pd.DataFrame]) -> None:
    """Tables computed whole for the period (bids, validation, dispatch, ...)."""
    for table, frame in frames.items():
        recorder.add_frame(table, frame, period=period)


def record_kpis(recorder: Recorder, period: int, kpis: list[tuple[str, float, str]]) -> None:
    """The period's KPIs, (name, value, unit) each."""
    if not kpis:
        return
    names, values, units = zip(*kpis, strict=True)
    text = {"name": np.array(names, dtype=object), "unit": np.array(units, dtype=object)}
    columns = text | {"value": np.array(values, dtype=float)}
    recorder.add_columns("kpis", columns, period=period)


def record_balancing(
    recorder: Recorder,
    period: int,
    network: TransmissionNetwork,
    plan: TsoPlan,
    clearing: BalancingResult | None,
    coefficients: bool,
) -> None:
    """What the period's balancing LP was built from and its objective, and the schedule's
    dispatch per generator: the tables the LP can be solved again from (its rows' coefficients
    only if ``coefficients``: ``record.balancing_coefficients`` of the config)."""
    dispatch = schedule_dispatch(network, plan.schedule)
    recorder.add_columns("schedule_dispatch", dispatch, period=period)
    if clearing is None:
        return
    rows, rhs = clearing.offer_rows
    lp = (
        period,
        clearing.ok,
        clearing.cost_eur,
        clearing.unserved_up_mw,
        clearing.unserved_down_mw,
        clearing.voll_eur_per_mwh,
        TIE_BREAK_EUR_PER_MWH,
        len(clearing.offers),
        len(rhs),
    )
    recorder.add_row("balancing_lp", lp)
    recorder.add_columns("balancing_offers", offer_book(clearing.offers), period=period)
    buses = {"bus": network.bus_ids, "load_mw": plan.load_mw, "need_mw": clearing.need_mw}
    recorder.add_columns("balancing_buses", buses, period=period)
    recorder.add_columns("balancing_branches", branch_rows(network, clearing), period=period)
    labels = {c: column_values(clearing.row_labels, c) for c in ROW_LABELS}
    labels |= {"row": np.arange(len(rhs)), "rhs": rhs}
    recorder.add_columns("balancing_rows", labels, period=period)
    if not coefficients:
        return
    row, col, data = _entries(rows)
    kept = data != 0.0
    offer_id = numbers(clearing.offers, "offer_id", np.int64)[col[kept]]
    entries = {"row": row[kept], "offer_id": offer_id, "coefficient": data[kept]}
    recorder.add_columns("balancing_coefficients", entries, period=period)


def _entries(rows: sparse.csr_array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and value of each stored entry of CSR ``rows``, in their stored order: what
    ``rows.tocoo()`` holds, read from the CSR arrays (the conversion's own checks and copies
    cost more than these few thousand entries)."""
    row = np.repeat(np.arange(rows.shape[0], dtype=rows.indices.dtype), np.diff(rows.indptr))
    return row, rows.indices, rows.data


def offer_book(offers: pd.DataFrame) -> dict[str, np.ndarray]:
    """The offer book as cleared, as columns of ``balancing_offers``: TER offers (negative
    ids, with their generator) and DER."""
    ter = column_values(offers, "offer_id") < 0
    element = offers["element"] if "element" in offers else pd.Series("", index=offers.index)
    columns = {c: column_values(offers, c) for c in OFFER_COLUMNS}
    return columns | {
        "resource": np.where(ter, RESOURCES["ter"], RESOURCES["der"]),
        "element": element.to_numpy(dtype=object, na_value=""),
    }


def branch_rows(network: TransmissionNetwork, clearing: BalancingResult) -> dict[str, Any]:
    """Each branch of the balancing's DC network: ends, susceptance, base flow and limit."""
    br = network.branches
    return {
        "branch": column_values(br, "element"),
        "from_bus": numbers(br, "from_bus", np.int64),
        "to_bus": numbers(br, "to_bus", np.int64),
        "b_pu": numbers(br, "b_pu"),
        "base_flow_mw": clearing.base_flow_mw,
        "limit_mw": clearing.flow_limit_mw,
    }


def record_baseline(
    recorder: Recorder, period: int, networks: Mapping, forecasts: Mapping[str, Injections]
) -> None:
    """Each DSO's baseline (forecast) injections: what the TSO planned its areas with and
    what validation starts from."""
    for name, forecast in forecasts.items():
        columns = injections_columns(networks[name], forecast)
        recorder.add_columns("baseline", columns, period=period, dso=name)
