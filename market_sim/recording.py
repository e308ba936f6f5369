"""The record stage: a period's values written as named rows of the results tables.

Every row is a mapping from the documented column names (:data:`market_sim.tables.TABLES`) to
values, or a DataFrame with those columns; the :class:`~market_sim.results.Recorder` turns them
into typed tables.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from market_sim.coordination.period import PeriodOutcome
from market_sim.delivery import Delivered
from market_sim.grid.injections import injections_table
from market_sim.results import Recorder
from market_sim.types import PowerFlowResult


def record_outcome(recorder: Recorder, outcome: PeriodOutcome) -> None:
    """The rows the coordination steps produced."""
    records = outcome.records
    recorder.add("validation_runs", records.validation_runs)
    recorder.add("clearing_runs", records.clearing_runs)
    for table in records.priority:
        recorder.add("priority", table)
    for table in records.flexibility_areas:
        recorder.add("flexibility_areas", table)


def price_rows(period: int, market: str, buses: np.ndarray, prices: np.ndarray) -> list[dict]:
    return [
        {"period": period, "market": market, "bus": int(b), "price_eur_per_mwh": float(p)}
        for b, p in zip(buses, prices, strict=True)
    ]


def grid_row(period: int, dso: str, pf: PowerFlowResult) -> dict:
    return {
        "period": period,
        "dso": dso,
        "converged": pf.converged,
        "vm_min_pu": pf.vm_min_pu,
        "vm_max_pu": pf.vm_max_pu,
        "max_line_loading_percent": pf.max_line_loading_percent,
        "max_trafo_loading_percent": pf.max_trafo_loading_percent,
        "n_voltage_violations": pf.n_voltage_violations,
        "n_line_violations": pf.n_line_violations,
        "n_trafo_violations": pf.n_trafo_violations,
        "interface_p_mw": pf.interface_p_mw,
        "interface_q_mvar": pf.interface_q_mvar,
    }


def record_delivery(
    recorder: Recorder, period: int, networks: Mapping, delivered: Mapping[str, Delivered]
) -> None:
    """Each DSO network's delivered injections and power-flow summary."""
    for name, d in delivered.items():
        table = injections_table(networks[name], d.injections)
        recorder.add("injections", table.assign(period=period, dso=name))
        recorder.add("grid", [grid_row(period, name, d.power_flow)])


def record_frames(recorder: Recorder, period: int, frames: Mapping[str, pd.DataFrame]) -> None:
    """Tables computed whole for the period (bids, validation, dispatch, ...)."""
    for table, frame in frames.items():
        recorder.add(table, frame.assign(period=period))


def kpi_rows(period: int, kpis: list[tuple[str, float, str]]) -> list[dict]:
    return [{"period": period, "name": n, "value": v, "unit": u} for n, v, u in kpis]
