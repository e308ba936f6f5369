"""What the interactive page draws from a stepped model: networks, messages, KPI charts.

The page draws from what the run itself carries: the delivered injections of the last period
(the run state) replayed through one AC power flow per network, the message log, and the KPI
rows recorded so far. Nothing is kept on the model for the page's sake.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
from matplotlib.figure import Figure

from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.model import MarketModel
from market_sim.plots import Run, kpi_series, network

#: KPIs charted per period: the plots' default panels without the balancing price.
CHARTED = (
    "resource_cost_eur",
    "der_dispatched_up_mwh",
    "der_dispatched_down_mwh",
    "baseline_violations",
    "der_caused_violations",
)


def network_figures(model: MarketModel) -> list[Figure]:
    """Each DSO network after the last period's delivery (before the first period: at its
    forecast), drawn by :func:`market_sim.plots.network` from one AC power flow."""
    figures = []
    for name, dso in model.dsos.items():
        injections = model.state.delivered.get(name) or model.forecasts(model.period)[name]
        flow = run_power_flow_detailed(dso.network, injections, dso.limits, write=False)
        figures.append(network(dso.network.net, flow.flows, dso.limits, title=name))
    return figures


def message_rows(model: MarketModel) -> pd.DataFrame:
    """The last period's messages between agents: step, kind, sender, receiver, size."""
    if model.period == 0:
        return pd.DataFrame(columns=["step", "kind", "sender", "receiver", "bytes"])
    messages = model.message_table()
    shown = messages[messages.period == model.period - 1]
    return shown[["step", "kind", "sender", "receiver", "bytes"]].reset_index(drop=True)


def kpi_figure(model: MarketModel) -> Figure:
    """The charted KPIs over the periods run so far (:func:`market_sim.plots.kpi_series` on
    the model's recorded rows)."""
    run = Run(model.name, {"kpis": model.recorder.table("kpis")}, model.config)
    return kpi_series(run, CHARTED)
