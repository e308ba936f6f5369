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
from market_sim.plots import network

#: KPIs charted per period, with the axis they share.
CHARTED = {
    "resource_cost_eur": "EUR",
    "der_dispatched_up_mwh": "MWh",
    "der_dispatched_down_mwh": "MWh",
    "baseline_violations": "count",
    "der_caused_violations": "count",
}


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
    """The charted KPIs over the periods run so far, one panel per unit."""
    kpis = model.recorder.table("kpis")
    units = sorted(set(CHARTED.values()))
    fig = Figure(figsize=(10, 2.4 * len(units)), layout="constrained")
    axes = fig.subplots(len(units), 1, sharex=True, squeeze=False)[:, 0]
    for ax, unit in zip(axes, units, strict=True):
        for name in (k for k, u in CHARTED.items() if u == unit):
            series = kpis[kpis.name == name]
            ax.plot(series.period, series.value, marker=".", label=name)
        ax.set_ylabel(unit)
        ax.legend(loc="upper left", fontsize="small")
    axes[-1].set_xlabel("period")
    return fig
