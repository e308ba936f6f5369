"""Network state as a table and back: what crosses the wire as operational data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from market_sim.grid.injections import tap_positions
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.types import ELEMENT_TABLES, Injections, Limits


def injections_from_table(network: DistributionNetwork, table: pd.DataFrame) -> Injections:
    """Rebuild :class:`Injections` from an ``injections`` table (element, element_index, ...).

    Elements missing from the table keep zero; transformer taps are read from ``trafo`` rows.
    The columns are read once as arrays: the TSO reads every DSO's reported state each period,
    and a boolean row selection of the table per element cost more than the power flow.
    """
    net = network.net
    element = table["element"].to_numpy()
    p_mw, q_mvar = table["p_mw"].to_numpy(float), table["q_mvar"].to_numpy(float)
    where = _table_rows(network, element, table["element_index"].to_numpy())
    p, q = {}, {}
    for name in ELEMENT_TABLES:
        mine, pos = where[name]
        p[name] = np.zeros(len(net[name]))
        q[name] = np.zeros(len(net[name]))
        p[name][pos] = p_mw[mine]
        q[name][pos] = q_mvar[mine]
    taps = np.nan_to_num(net.trafo.tap_pos.to_numpy(float))
    mine, pos = where["trafo"]
    if mine.any():
        taps[pos] = table["tap_pos"].to_numpy()[mine]
    return Injections(p, q, taps)


def _table_rows(
    network: DistributionNetwork, element: np.ndarray, index: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per element table (the injecting ones and ``trafo``): which rows of a state table are
    its elements, and their positions in the net's table (-1: unknown, as ``get_indexer``).

    Kept with the network for the last table layout seen (and the net's indices it was found
    in): a DSO reports the same elements in the same order every period, and four
    ``get_indexer`` calls cost more than the rest.
    """
    tables = (*ELEMENT_TABLES, "trafo")
    indices = [network.net[name].index for name in tables]
    kept = network.solver_cache.get("state_table_rows")
    if (
        kept is not None
        and all(a is b for a, b in zip(kept[2], indices, strict=True))
        and np.array_equal(kept[1], index)
        and np.array_equal(kept[0], element)
    ):
        return kept[3]
    where = {}
    for name, labels in zip(tables, indices, strict=True):
        mine = element == name
        where[name] = (mine, labels.get_indexer(index[mine]))
    network.solver_cache["state_table_rows"] = (element.copy(), index.copy(), indices, where)
    return where


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
    """The network's real-time state as one table: every element's set-point (the rows of
    :func:`~.injections.injections_table`), every bus's voltage (magnitude, angle), every
    line's and transformer's flow at its from / hv end and loading, and the interface
    injection (the ext_grid row, pandapower's sign).

    :func:`injections_from_table` reads the set-points back; a power flow that did not
    converge leaves the measured columns NaN. Built from arrays in one go: it is sent every
    period, and assembling it from DataFrames cost forty times the power flow.
    """
    net, flows, inj = network.net, detail.flows, injections
    blocks = [_block(net, t, p_mw=inj.p_mw[t], q_mvar=inj.q_mvar[t]) for t in ELEMENT_TABLES]
    taps = tap_positions(network, inj)
    if flows is None:
        blocks.append(_block(net, "trafo", tap_pos=taps))
    else:
        blocks += [
            _block(net, "trafo", p_mw=flows.trafo_p_mw, q_mvar=flows.trafo_q_mvar, tap_pos=taps,
                   loading_percent=flows.trafo_loading_percent),
            _block(net, "bus", vm_pu=flows.vm_pu, va_degree=flows.va_degree),
            _block(net, "line", p_mw=flows.line_p_mw, q_mvar=flows.line_q_mvar,
                   loading_percent=flows.line_loading_percent),
            _block(net, "ext_grid", p_mw=[flows.ext_p_mw], q_mvar=[flows.ext_q_mvar]),
        ]  # fmt: skip
    sizes = [len(b["element_index"]) for b in blocks]
    codes = np.repeat(np.arange(len(blocks)), sizes)
    names = [b["element"] for b in blocks]
    table = {"element": pd.Categorical.from_codes(codes, categories=names)}
    for column in STATE_COLUMNS[1:]:
        dtype = STATE_WIRE_TYPES.get(column, "int64" if column == "element_index" else "float64")
        table[column] = np.concatenate([b[column] for b in blocks]).astype(dtype)
    return pd.DataFrame(table)


def measured_state(
    network: DistributionNetwork, injections: Injections, limits: Limits
) -> pd.DataFrame:
    """The state table (:func:`network_state_table`) of one operating point, from its AC
    power flow: what an operator measures and reports (tso_managed's operational data, an
    asset owner's network status to its iDSO)."""
    flow = run_power_flow_detailed(network, injections, limits, write=False)
    return network_state_table(network, injections, flow)


def _block(net: Any, element: str, **values) -> dict[str, Any]:
    """One pandapower table's rows as arrays (the ext_grid: one row, all together); the
    quantities not given are NaN."""
    index = net[element].index.to_numpy(dtype=np.int64)
    n = min(len(index), 1) if element == "ext_grid" else len(index)
    block: dict[str, Any] = {"element": element, "element_index": index[:n]}
    for column in STATE_COLUMNS[2:]:
        given = values.get(column)
        block[column] = np.full(n, np.nan) if given is None else np.asarray(given, float)[:n]
    return block
