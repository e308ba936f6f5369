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
from market_sim.markets.balancing import TIE_BREAK_EUR_PER_MWH, BalancingResult
from market_sim.markets.schedule import dispatch_table
from market_sim.markets.transmission import TransmissionNetwork
from market_sim.markets.tso_markets import TsoPlan
from market_sim.results import Recorder
from market_sim.types import Injections, PowerFlowResult
from market_sim.wear import Wear


def record_outcome(recorder: Recorder, outcome: PeriodOutcome) -> None:
    """The rows the coordination steps produced."""
    records = outcome.records
    recorder.add("validation_runs", records.validation_runs)
    recorder.add("clearing_runs", records.clearing_runs)
    for table in records.priority:
        recorder.add("priority", table)
    for table in records.flexibility_areas:
        recorder.add("flexibility_areas", table)
    for table in records.operational_data:
        recorder.add("operational_data", table)


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


def record_wear(recorder: Recorder, period: int, wear: Mapping[str, Wear]) -> None:
    """Each DSO network's transformers' aging rows after delivery."""
    for w in wear.values():
        recorder.add("aging", w.rows.assign(period=period))


def record_frames(recorder: Recorder, period: int, frames: Mapping[str, pd.DataFrame]) -> None:
    """Tables computed whole for the period (bids, validation, dispatch, ...)."""
    for table, frame in frames.items():
        recorder.add(table, frame.assign(period=period))


def kpi_rows(period: int, kpis: list[tuple[str, float, str]]) -> list[dict]:
    return [{"period": period, "name": n, "value": v, "unit": u} for n, v, u in kpis]


def record_balancing(
    recorder: Recorder,
    period: int,
    network: TransmissionNetwork,
    plan: TsoPlan,
    clearing: BalancingResult | None,
) -> None:
    """What the period's balancing LP was built from and its objective, and the schedule's
    dispatch per generator: the tables the LP can be solved again from."""
    recorder.add("schedule_dispatch", dispatch_table(network, plan.schedule).assign(period=period))
    if clearing is None:
        return
    rows, rhs = clearing.offer_rows
    lp = {
        "period": period,
        "ok": clearing.ok,
        "cost_eur_per_h": clearing.cost_eur,
        "unserved_up_mw": clearing.unserved_up_mw,
        "unserved_down_mw": clearing.unserved_down_mw,
        "voll_eur_per_mwh": clearing.voll_eur_per_mwh,
        "tie_break_eur_per_mwh": TIE_BREAK_EUR_PER_MWH,
        "n_offers": len(clearing.offers),
        "n_rows": len(rhs),
    }
    recorder.add("balancing_lp", [lp])
    recorder.add("balancing_offers", offer_book(clearing.offers).assign(period=period))
    buses = {"bus": network.bus_ids, "load_mw": plan.load_mw, "need_mw": clearing.need_mw}
    recorder.add("balancing_buses", pd.DataFrame(buses).assign(period=period))
    recorder.add("balancing_branches", branch_rows(network, clearing).assign(period=period))
    labels = clearing.row_labels.assign(row=np.arange(len(rhs)), rhs=rhs)
    recorder.add("balancing_rows", labels.assign(period=period))
    coo = rows.tocoo()
    kept = coo.data != 0.0
    offer_id = clearing.offers.offer_id.to_numpy(np.int64)[coo.col[kept]]
    coefficients = {"row": coo.row[kept], "offer_id": offer_id, "coefficient": coo.data[kept]}
    recorder.add("balancing_coefficients", pd.DataFrame(coefficients).assign(period=period))


def offer_book(offers: pd.DataFrame) -> pd.DataFrame:
    """The offer book as cleared: TER offers (negative ids, with their generator) and DER."""
    ter = offers.offer_id.to_numpy() < 0
    element = offers["element"] if "element" in offers else pd.Series("", index=offers.index)
    return offers.assign(
        resource=np.where(ter, "ter", "der"), element=element.fillna("").astype(str)
    )


def branch_rows(network: TransmissionNetwork, clearing: BalancingResult) -> pd.DataFrame:
    """Each branch of the balancing's DC network: ends, susceptance, base flow and limit."""
    br = network.branches
    return pd.DataFrame(
        {
            "branch": br["element"].to_numpy(),
            "from_bus": br["from_bus"].to_numpy(np.int64),
            "to_bus": br["to_bus"].to_numpy(np.int64),
            "b_pu": br["b_pu"].to_numpy(float),
            "base_flow_mw": clearing.base_flow_mw,
            "limit_mw": clearing.flow_limit_mw,
        }
    )


def record_baseline(
    recorder: Recorder, period: int, networks: Mapping, forecasts: Mapping[str, Injections]
) -> None:
    """Each DSO's baseline (forecast) injections: what the TSO planned its areas with and
    what validation starts from."""
    for name, forecast in forecasts.items():
        table = injections_table(networks[name], forecast)
        recorder.add("baseline", table.assign(period=period, dso=name))
