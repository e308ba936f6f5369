"""A distribution network at one period: buses coloured by voltage, lines by loading.

What is drawn is the delivery power flow of the period, replayed: the run's ``injections``
table holds every delivered set-point and tap of every period, and the results tables keep only
per-network extremes (``grid``), so :func:`replay_period` rebuilds the SimBench network, writes
the period's rows into it and runs pandapower's ``runpp``, the reference the engine's
lightsim2grid power flow matches to about 1e-10 pu (tests/test_end_to_end.py replays the same
way). One power flow per figure: cheap, and faithful to what was delivered, where re-running
the engine or plotting the forecast would not be.

The DSO's limits are marked on the colour bars; buses outside the voltage band get a black ring.
Coordinates come from SimBench's bus geodata (``net.bus.geo`` GeoJSON points in pandapower 3,
``net.bus_geodata`` in older nets); transformers are drawn as squares at their LV bus,
coloured by their loading.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from market_sim.grid.flow_summary import Flows, monitored_buses
from market_sim.grid.injections import apply_table
from market_sim.grid.network import build_net
from market_sim.grid.pandapower_reference import runpp_flows
from market_sim.plots.runs import Run
from market_sim.types import Limits

BUS_GID = "buses"
LINE_GID = "lines"
TRAFO_GID = "trafos"
LIMIT_GID = "limit"
#: Loading colours; NaN (a line not computed: out of service, isolated) light grey.
LOADING_CMAP = colormaps["plasma_r"].with_extremes(bad="0.8")


def bus_xy(net: Any) -> np.ndarray:
    """(n_bus, 2) bus coordinates in ``net.bus`` order, from the net's geodata."""
    if "geo" in net.bus and net.bus.geo.notna().all():
        return np.array([json.loads(g)["coordinates"][:2] for g in net.bus.geo], dtype=float)
    geodata = getattr(net, "bus_geodata", None)
    if geodata is not None and len(geodata) and net.bus.index.isin(geodata.index).all():
        return geodata.loc[net.bus.index, ["x", "y"]].to_numpy(dtype=float)
    raise ValueError("the network carries no bus coordinates (net.bus.geo or net.bus_geodata)")


def replay_period(run: Run, dso: str, period: int) -> tuple[Any, Flows | None]:
    """The network of ``dso`` with the period's delivered injections, and its power flow (None
    where it does not converge)."""
    codes = {d.name: d.simbench_code for d in run.config.dsos}
    if dso not in codes:
        raise ValueError(f"dso: got {dso!r}; allowed: {', '.join(codes)}")
    injections = run.tables["injections"]
    rows = injections[(injections.period == period) & (injections.dso == dso)]
    if rows.empty:
        raise ValueError(f"period {period}: no injections of {dso} recorded")
    net = build_net(codes[dso])
    apply_table(net, rows)
    return net, runpp_flows(net, codes[dso])


def dso_limits(run: Run, dso: str) -> Limits:
    """The limits ``dso`` validated with and delivery was judged against."""
    config = next(d for d in run.config.dsos if d.name == dso)
    return Limits(**config.limits.model_dump())


def network_at(run: Run, dso: str, period: int) -> Figure:
    """:func:`network` of ``dso`` at ``period`` of ``run``, from the replayed delivery."""
    net, flows = replay_period(run, dso, period)
    title = f"{run.label}: {dso} after delivery, period {period}"
    return network(net, flows, dso_limits(run, dso), title)


def network(net: Any, flows: Flows | None, limits: Limits, title: str = "") -> Figure:
    """``net`` coloured by the bus voltages and branch loadings of ``flows`` (a converged power
    flow of it; None: drawn grey, as not converged), with ``limits`` on the colour bars."""
    n_bus, n_line, n_trafo = len(net.bus), len(net.line), len(net.trafo)
    if flows is None:
        flows = Flows(
            np.full(n_bus, np.nan),
            np.full(n_line, np.nan),
            np.full(n_trafo, np.nan),
            np.nan,
            np.nan,
        )
        title += " (power flow did not converge)"
    xy = bus_xy(net)
    pos = {b: i for i, b in enumerate(net.bus.index)}
    fig = Figure(figsize=(10, 7), layout="constrained")
    ax = fig.add_subplot()
    loading = _loading_norm(flows, limits)
    segments = [
        [xy[pos[f]], xy[pos[t]]] for f, t in zip(net.line.from_bus, net.line.to_bus, strict=True)
    ]
    lines = LineCollection(segments, cmap=LOADING_CMAP, norm=loading, linewidths=2.0, gid=LINE_GID)
    lines.set_array(np.ma.masked_invalid(flows.line_loading_percent))
    ax.add_collection(lines)
    lv = [pos[b] for b in net.trafo.lv_bus]
    ax.scatter(
        xy[lv, 0],
        xy[lv, 1],
        c=flows.trafo_loading_percent,
        cmap=LOADING_CMAP,
        norm=loading,
        marker="s",
        s=140,
        edgecolors="k",
        zorder=3,
        gid=TRAFO_GID,
    )
    voltage = _voltage_norm(flows.vm_pu, limits)
    buses = ax.scatter(
        xy[:, 0],
        xy[:, 1],
        c=flows.vm_pu,
        cmap="coolwarm",
        norm=voltage,
        s=22,
        zorder=4,
        plotnonfinite=True,
        gid=BUS_GID,
    )
    outside = _outside(net, flows.vm_pu, limits)
    band = f"{limits.vm_min_pu}-{limits.vm_max_pu} pu"
    ring = {"s": 70, "facecolors": "none", "edgecolors": "k", "zorder": 5}
    ax.scatter(*xy[outside].T, label=f"{outside.sum()} buses outside {band}", **ring)
    _colorbar(fig, ax, buses, "bus voltage, pu", (limits.vm_min_pu, limits.vm_max_pu))
    _colorbar(fig, ax, lines, "line and transformer loading, %", (limits.max_loading_percent,))
    ax.set_aspect(1 / np.cos(np.radians(np.nanmean(xy[:, 1]))), adjustable="datalim")
    ax.autoscale_view()
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title)
    return fig


def _colorbar(fig: Figure, ax, mappable, label: str, limits: tuple[float, ...]) -> None:
    """A colour bar with the DSO's limits drawn across it."""
    bar = fig.colorbar(mappable, ax=ax, label=label, shrink=0.8)
    for value in limits:
        bar.ax.axhline(value, color="k", lw=2.0, gid=LIMIT_GID)


def _voltage_norm(vm_pu: np.ndarray, limits: Limits) -> Normalize:
    """Symmetric around 1 pu, wide enough for the limits and every bus."""
    finite = vm_pu[np.isfinite(vm_pu)]
    spread = max(limits.vm_max_pu - 1.0, 1.0 - limits.vm_min_pu, *np.abs(finite - 1.0)) + 0.01
    return Normalize(1.0 - spread, 1.0 + spread)


def _loading_norm(flows: Flows, limits: Limits) -> Normalize:
    loadings = np.concatenate([flows.line_loading_percent, flows.trafo_loading_percent])
    finite = loadings[np.isfinite(loadings)]
    return Normalize(0.0, max(1.1 * limits.max_loading_percent, *finite))


def _outside(net: Any, vm_pu: np.ndarray, limits: Limits) -> np.ndarray:
    """Monitored buses outside the voltage band (the violations the grid table counts)."""
    with np.errstate(invalid="ignore"):
        out = (vm_pu < limits.vm_min_pu) | (vm_pu > limits.vm_max_pu)
    return out & monitored_buses(net)
