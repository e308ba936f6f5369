"""Network state as a table and back: what crosses the wire as operational data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.grid.injections import injections_table
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail
from market_sim.types import ELEMENT_TABLES, Injections


def injections_from_table(network: DistributionNetwork, table: pd.DataFrame) -> Injections:
    """Rebuild :class:`Injections` from an ``injections`` table (element, element_index, ...).

    Elements missing from the table keep zero; transformer taps are read from ``trafo`` rows.
    """
    net = network.net
    p, q = {}, {}
    for name in ELEMENT_TABLES:
        rows = table[table.element == name]
        pos = net[name].index.get_indexer(rows.element_index.to_numpy())
        p[name] = np.zeros(len(net[name]))
        q[name] = np.zeros(len(net[name]))
        p[name][pos] = rows.p_mw.to_numpy(float)
        q[name][pos] = rows.q_mvar.to_numpy(float)
    taps = np.nan_to_num(net.trafo.tap_pos.to_numpy(float))
    trafo = table[table.element == "trafo"]
    if len(trafo):
        taps[net.trafo.index.get_indexer(trafo.element_index.to_numpy())] = trafo.tap_pos
    return Injections(p, q, taps)


#: Columns of the operational data table: the set-points of :func:`injections_table`, then the
#: measured state (NaN where a quantity does not apply to the element).
STATE_COLUMNS = (
    "element",
    "element_index",
    "p_mw",
    "q_mvar",
    "tap_pos",
    "vm_pu",
    "va_degree",
    "loading_percent",
)
#: Compact types on the wire (message bytes are a KPI): element names dictionary-encoded,
#: tap positions (integers) and measured quantities in single precision (1e-7 relative, finer
#: than any measurement); set-points stay double, the TSO computes with them.
STATE_WIRE_TYPES = {
    "element": "category",
    "tap_pos": "float32",
    "vm_pu": "float32",
    "va_degree": "float32",
    "loading_percent": "float32",
}


def network_state_table(
    network: DistributionNetwork, injections: Injections, detail: PowerFlowDetail
) -> pd.DataFrame:
    """The network's real-time state as one table: every element's set-point, every bus's
    voltage (magnitude, angle), every line's and transformer's flow at its from / hv end and
    loading, and the interface injection (the ext_grid row, pandapower's sign).

    :func:`injections_from_table` reads the set-points back; a power flow that did not
    converge leaves the measured columns NaN.
    """
    net, flows = network.net, detail.flows
    setpoints = injections_table(network, injections)
    if flows is None:
        return setpoints.reindex(columns=list(STATE_COLUMNS)).astype(STATE_WIRE_TYPES)
    trafo = setpoints.element == "trafo"
    setpoints.loc[trafo, "p_mw"] = flows.trafo_p_mw
    setpoints.loc[trafo, "q_mvar"] = flows.trafo_q_mvar
    setpoints.loc[trafo, "loading_percent"] = flows.trafo_loading_percent
    parts = [
        setpoints,
        _rows("bus", net.bus.index, vm_pu=flows.vm_pu, va_degree=flows.va_degree),
        _rows(
            "line",
            net.line.index,
            p_mw=flows.line_p_mw,
            q_mvar=flows.line_q_mvar,
            loading_percent=flows.line_loading_percent,
        ),
        _rows("ext_grid", net.ext_grid.index[:1], p_mw=flows.ext_p_mw, q_mvar=flows.ext_q_mvar),
    ]
    out = pd.concat(parts, ignore_index=True)[list(STATE_COLUMNS)]
    return out.astype(STATE_WIRE_TYPES)


def _rows(element: str, index: pd.Index, **values) -> pd.DataFrame:
    """Rows of one pandapower table; the columns not given are NaN."""
    rows = pd.DataFrame({"element": element, "element_index": index.to_numpy(dtype=np.int64)})
    for column in STATE_COLUMNS[2:]:
        rows[column] = np.asarray(values.get(column, np.nan), dtype=float) * np.ones(len(rows))
    return rows
