"""Network state as a table and back: what crosses the wire as operational data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from market_sim.columns import array_of, new_frame, numbers
from market_sim.grid.injections import tap_positions
from market_sim.grid.network import DistributionNetwork, kept_for_layout
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.types import ELEMENT_TABLES, Injections, Limits


def injections_from_table(network: DistributionNetwork, table: pd.DataFrame) -> Injections:
    """Rebuild :class:`Injections` from an ``injections`` table (element, element_index, ...).

    Elements missing from the table keep zero; transformer taps are read from ``trafo`` rows
    (a transformer without one keeps the net's tap). The columns are read once as arrays: the
    TSO reads every DSO's reported state each period, and a boolean row selection of the
    table per element cost more than the power flow.
    """
    net = network.net
    p_mw, q_mvar = numbers(table, "p_mw"), numbers(table, "q_mvar")
    rows = _table_rows(
        network, array_of(table, "element"), np.asarray(array_of(table, "element_index"))
    )
    p, q = {}, {}
    for name in ELEMENT_TABLES:
        mine, pos = rows.where[name]
        p[name] = np.zeros(len(net[name]))
        q[name] = np.zeros(len(net[name]))
        p[name][pos] = p_mw[mine]
        q[name][pos] = q_mvar[mine]
    mine, pos = rows.where["trafo"]
    if rows.every_tap:  # each of the net's taps is overwritten: reading them would be waste
        taps = np.zeros(len(net.trafo))
    else:
        taps = np.nan_to_num(net.trafo.tap_pos.to_numpy(float))
    if mine.any():
        taps[pos] = np.asarray(array_of(table, "tap_pos"))[mine]
    return Injections(p, q, taps)


#: The net's tables a state table writes: the injecting ones, then the transformers' taps.
TABLES_WRITTEN = (*ELEMENT_TABLES, "trafo")


@dataclass(frozen=True)
class _TableRows:
    """Where a state table's rows go: per element table (the injecting ones and ``trafo``),
    which rows of the table are its elements and their positions in the net's table (-1:
    unknown, as ``get_indexer``); ``every_tap``: the trafo rows write every transformer's tap."""

    where: dict[str, tuple[np.ndarray, np.ndarray]]
    every_tap: bool


def _table_rows(network: DistributionNetwork, element: Any, index: np.ndarray) -> _TableRows:
    """The rows of a state table (:class:`_TableRows`), from its ``element`` column's values
    (as categorical codes: a state table's is categorical) and its ``element_index``.

    Kept with the network for the last table layout seen (:func:`~.network.kept_for_layout`):
    a DSO reports the same elements in the same order every period, and four ``get_indexer``
    calls cost more than the rest.
    """
    values = element
    if not isinstance(values, pd.Categorical):
        values = pd.Categorical(values)
    codes, names = values.codes, values.categories.tolist()

    def rows(indices: list[pd.Index]) -> _TableRows:
        where = {}
        for name, labels in zip(TABLES_WRITTEN, indices, strict=True):
            mine = codes == names.index(name) if name in names else np.zeros(len(codes), bool)
            where[name] = (mine, labels.get_indexer(index[mine]))
        written = np.zeros(len(indices[-1]), bool)
        written[where["trafo"][1]] = True  # -1 writes the last one, as the assignment of taps does
        return _TableRows(where, bool(written.all()))

    return kept_for_layout(network, "state_table_rows", TABLES_WRITTEN, (names, codes, index), rows)


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
    converge leaves the measured columns NaN. The rows (which element, which index) are laid
    out once per network and kind of table (:func:`_state_layout`) and each period fills only
    the value columns: it is sent every period, and assembling it from DataFrames cost forty
    times the power flow.
    """
    flows, inj = detail.flows, injections
    values = {t: {"p_mw": inj.p_mw[t], "q_mvar": inj.q_mvar[t]} for t in ELEMENT_TABLES}
    taps = tap_positions(network, inj)
    if flows is None:
        values["trafo"] = {"tap_pos": taps}
    else:
        values["trafo"] = {
            "p_mw": flows.trafo_p_mw,
            "q_mvar": flows.trafo_q_mvar,
            "tap_pos": taps,
            "loading_percent": flows.trafo_loading_percent,
        }
        values["bus"] = {"vm_pu": flows.vm_pu, "va_degree": flows.va_degree}
        values["line"] = {
            "p_mw": flows.line_p_mw,
            "q_mvar": flows.line_q_mvar,
            "loading_percent": flows.line_loading_percent,
        }
        values["ext_grid"] = {"p_mw": [flows.ext_p_mw], "q_mvar": [flows.ext_q_mvar]}
    layout = _state_layout(network, tuple(values))
    table = {"element": layout.element.copy(), "element_index": layout.element_index}
    for column in STATE_COLUMNS[2:]:
        filled = np.full(len(layout.element_index), np.nan, STATE_WIRE_TYPES.get(column, float))
        for element, rows in layout.rows.items():
            given = values[element].get(column)
            if given is not None:
                filled[rows] = np.asarray(given, float)[: rows.stop - rows.start]
        table[column] = filled
    return new_frame(table)  # see _StateLayout


@dataclass(frozen=True)
class _StateLayout:
    """The rows of a state table of one network: each element table's rows in turn (its
    elements in the net's order; the ext_grid: one row, all together), as the ``element``
    (categorical, the tables as categories) and ``element_index`` columns, and where each
    table's rows are; ``indices``, the net's indices it was laid out from.

    Every table of the layout shares its ``element_index`` column, uncopied and read-only, so
    that no reader can change another period's table through it (the categorical is copied:
    pandas may write into one in place).
    """

    element: pd.Categorical
    element_index: np.ndarray
    rows: dict[str, slice]
    indices: tuple[pd.Index, ...]


def _state_layout(network: DistributionNetwork, elements: tuple[str, ...]) -> _StateLayout:
    """The layout of a state table of these element tables, kept with the network per set of
    tables while the net's indices are the same objects (as :func:`_table_rows`)."""
    indices = tuple(network.net[name].index for name in elements)
    layouts = network.solver_cache.setdefault("state_layouts", {})
    kept = layouts.get(elements)
    if kept is not None and all(a is b for a, b in zip(kept.indices, indices, strict=True)):
        return kept
    numbers = [
        index.to_numpy(dtype=np.int64)[: 1 if name == "ext_grid" else len(index)]
        for name, index in zip(elements, indices, strict=True)
    ]
    sizes = [len(n) for n in numbers]
    ends = np.cumsum(sizes).tolist()
    codes = np.repeat(np.arange(len(elements)), sizes)
    element_index = np.concatenate(numbers)
    element_index.flags.writeable = False  # shared by every table of this layout
    layouts[elements] = _StateLayout(
        pd.Categorical.from_codes(codes, categories=list(elements)),
        element_index,
        {
            name: slice(end - size, end)
            for name, size, end in zip(elements, sizes, ends, strict=True)
        },
        indices,
    )
    return layouts[elements]


def measured_state(
    network: DistributionNetwork, injections: Injections, limits: Limits
) -> pd.DataFrame:
    """The state table (:func:`network_state_table`) of one operating point, from its AC
    power flow: what an operator measures and reports (tso_managed's operational data, an
    asset owner's network status to its iDSO)."""
    return measured(network, injections, limits)[0]


def measured(
    network: DistributionNetwork, injections: Injections, limits: Limits
) -> tuple[pd.DataFrame, PowerFlowDetail]:
    """:func:`measured_state` and the power flow it was measured from: a reader of the table
    that would solve the same point again (the TSO, in tso_managed) can be handed the flow."""
    flow = run_power_flow_detailed(network, injections, limits, write=False)
    return network_state_table(network, injections, flow), flow
