"""What the interactive page draws from a stepped model: networks, messages, KPI charts.

The page draws from what the run itself carries: the delivered injections of the last period
(the run state) replayed through one AC power flow per network, the message log, and the KPI
rows recorded so far. Nothing is kept on the model for the page's sake.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.model import MarketModel

#: KPIs charted per period, with the axis they share.
CHARTED = {
    "resource_cost_eur": "EUR",
    "der_dispatched_up_mwh": "MWh",
    "der_dispatched_down_mwh": "MWh",
    "baseline_violations": "count",
    "der_caused_violations": "count",
}


def bus_xy(net) -> np.ndarray:
    """Bus coordinates (n, 2) from pandapower's GeoJSON ``geo`` column (NaN where missing)."""
    xy = np.full((len(net.bus), 2), np.nan)
    for i, geo in enumerate(net.bus.get("geo", pd.Series(index=net.bus.index, dtype=object))):
        if isinstance(geo, str):
            xy[i] = json.loads(geo)["coordinates"][:2]
    return xy


def network_figure(model: MarketModel) -> Figure:
    """Each DSO network after the last period's delivery: buses coloured by voltage (pu) on a
    scale spanning the DSO's band, lines by loading (%) up to its limit; before the first
    period, at the first period's forecast."""
    fig = Figure(figsize=(5.5 * len(model.dsos), 4.8), layout="constrained")
    axes = fig.subplots(1, len(model.dsos), squeeze=False)[0]
    for ax, (name, dso) in zip(axes, model.dsos.items(), strict=True):
        injections = model.state.delivered.get(name) or model.forecasts(model.period)[name]
        flow = run_power_flow_detailed(dso.network, injections, dso.limits, write=False)
        _draw_network(fig, ax, dso.network.net, flow, dso.limits)
        ax.set_title(f"{name}: {'converged' if flow.result.converged else 'NOT converged'}")
    return fig


def _draw_network(fig: Figure, ax, net, flow, limits) -> None:
    xy = bus_xy(net)
    position = {bus: k for k, bus in enumerate(net.bus.index)}
    ends = [
        (xy[position[f]], xy[position[t]])
        for f, t in zip(net.line.from_bus, net.line.to_bus, strict=True)
    ]
    lines = LineCollection(ends, cmap="Reds", linewidths=1.5)
    lines.set_array(np.nan_to_num(flow.line_loading_percent))
    lines.set_clim(0, limits.max_loading_percent)
    ax.add_collection(lines)
    points = ax.scatter(xy[:, 0], xy[:, 1], c=flow.vm_pu, cmap="coolwarm", s=9, zorder=3)
    points.set_clim(limits.vm_min_pu, limits.vm_max_pu)
    fig.colorbar(points, ax=ax, label="bus voltage, pu (the DSO's band)", shrink=0.8)
    fig.colorbar(lines, ax=ax, label="line loading, % (up to the limit)", shrink=0.8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])


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
