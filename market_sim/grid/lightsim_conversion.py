"""The pandapower net as lightsim2grid can read it, and whether it can read it at all.

lightsim2grid's converter supports what SimBench distribution networks contain
(constant-power loads, sgens, storages, one ext_grid) but ignores switches and mislabels buses
of a non-contiguous index. :func:`solver_net` prepares a copy it reads correctly, once per
network; :func:`unsupported_reason` names what it cannot reproduce, so that such a network
uses pandapower's ``runpp`` instead.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

try:
    import lightsim2grid
except ImportError:  # the runpp fallback still works without it
    lightsim2grid = None

#: Bus columns of every table the solver net keeps, renumbered to fused bus positions.
_BUS_COLUMNS = (
    ("line", ("from_bus", "to_bus")),
    ("trafo", ("hv_bus", "lv_bus")),
    ("load", ("bus",)),
    ("sgen", ("bus",)),
    ("storage", ("bus",)),
    ("ext_grid", ("bus",)),
    ("shunt", ("bus",)),
    ("gen", ("bus",)),
)

#: An open line / trafo switch as (table, position, side 1 or 2) of the branch end it opens.
OpenEnd = tuple[str, int, int]


def unsupported_reason(net: Any) -> str:
    """Why lightsim2grid cannot solve ``net`` like ``runpp`` would, or "" if it can."""
    if lightsim2grid is None:
        return "lightsim2grid is not installed"
    if len(net.gen) and net.gen["in_service"].any():
        return "gen elements (voltage-controlled)"
    if int(net.ext_grid["in_service"].sum()) != 1:
        return "not exactly one ext_grid (lightsim2grid would distribute the slack)"
    cols = [c for c in net.load.columns if c.startswith("const_")]
    if len(net.load) and cols and np.abs(net.load[cols].to_numpy(float)).sum() > 0:
        return "voltage-dependent loads"
    for table in ("trafo3w", "ward", "xward", "impedance", "dcline", "motor", "asymmetric_load"):
        if table in net and len(net[table]) and net[table]["in_service"].any():
            return f"{table} elements"
    for table in ("line", "trafo", "sgen", "load", "storage"):
        if "parallel" in net[table] and (net[table]["parallel"].to_numpy() != 1).any():
            return f"parallel {table}s"
    return ""


def fused_bus(net: Any) -> np.ndarray:
    """``net.bus`` position -> position of the bus it is merged with by closed bus-bus switches.

    lightsim2grid ignores switches, so closed bus-bus switches are fused here once (what
    pandapower does internally); each group is represented by its lowest position.
    """
    n = len(net.bus)
    sw = net.switch
    bb = sw[(sw["et"] == "b") & sw["closed"].astype(bool)]
    a = net.bus.index.get_indexer(bb["bus"].to_numpy())
    b = net.bus.index.get_indexer(bb["element"].to_numpy())
    graph = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    first = np.full(label.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, label, np.arange(n))
    return first[label]


def solver_net(net: Any) -> tuple[Any, np.ndarray, list[OpenEnd]]:
    """A copy of ``net`` lightsim2grid can read, its :func:`fused_bus` map and open ends.

    Buses are renumbered to their positions (lightsim2grid's converter mislabels buses of a
    non-contiguous index), closed bus-bus switches are fused, switches are dropped and open
    line / trafo switches are returned as (table, position, side) to open that branch end in
    the grid, which is pandapower's auxiliary-bus model of an open switch.
    """
    fused = fused_bus(net)
    s = copy.deepcopy(net)
    bus_pos = net.bus.index
    for table, cols in _BUS_COLUMNS:
        for col in cols:
            if len(s[table]):
                s[table][col] = fused[bus_pos.get_indexer(s[table][col].to_numpy())]
    s.bus.index = pd.RangeIndex(len(s.bus))
    s.bus["in_service"] = s.bus["in_service"].to_numpy(dtype=bool) & (
        fused == np.arange(len(fused))
    )
    for table in ("load", "sgen", "storage"):
        for col in ("min_p_mw", "max_p_mw", "min_q_mvar", "max_q_mvar"):
            if col in s[table]:  # SimBench stores these as objects the converter cannot read
                s[table][col] = pd.to_numeric(s[table][col], errors="coerce").astype(float)
    open_ends = _open_ends(net)
    s.switch = s.switch.iloc[0:0]
    return s, fused, open_ends


def _open_ends(net: Any) -> list[OpenEnd]:
    """The branch end every open line / trafo switch of ``net`` disconnects."""
    sw = net.switch
    open_ends = []
    for et, table, first_bus in (("l", "line", "from_bus"), ("t", "trafo", "hv_bus")):
        sel = sw[(sw["et"] == et) & ~sw["closed"].astype(bool)]
        pos = net[table].index.get_indexer(sel["element"].to_numpy())
        side = np.where(sel["bus"].to_numpy() == net[table][first_bus].to_numpy()[pos], 1, 2)
        open_ends += [(table, int(p), int(k)) for p, k in zip(pos, side, strict=True)]
    return open_ends
