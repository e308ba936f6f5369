"""Set-points of a period as arrays, as a bid book, as a net's tables and as a saved table.

A power flow reads :class:`~market_sim.types.Injections`; bids change them
(:func:`apply_bids`), :func:`write_injections` mirrors them into ``dn.net`` so that the net
reflects the last run, and :func:`injections_table` / :func:`apply_table` are the saved form a
researcher replays with pandapower alone (:func:`~.pandapower_reference.replay_power_flow`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from market_sim.grid.network import DistributionNetwork, table_positions
from market_sim.types import ELEMENT_TABLES, Injections, signed_mw

#: Sign of an *up* bid on the pandapower value of each table (injection up = consumption down).
UP_SIGN = {"load": -1.0, "sgen": 1.0, "storage": -1.0}


def _positions(dn: DistributionNetwork, table: str, index: np.ndarray) -> np.ndarray:
    index = np.asarray(index)
    pos = table_positions(dn, table, index)
    if (pos < 0).any():
        bad = index[pos < 0][:5].tolist()
        raise ValueError(f"bids refer to unknown {table} indices {bad}")
    return pos


def apply_bids(
    dn: DistributionNetwork,
    injections: Injections,
    bids: pd.DataFrame | Mapping[str, np.ndarray] | None,
    mw_column: str = "mw",
) -> Injections:
    """New injections with every bid row activated by its ``mw_column`` quantity (``bids``:
    a table, or its columns as arrays).

    Up means more injection: load and storage p go down, sgen p goes up; down is the opposite.
    """
    out = injections.copy()
    if bids is None or len(bids) == 0:
        return out
    signed = signed_mw(np.asarray(bids["direction"]), np.asarray(bids[mw_column], dtype=float))
    if not np.isfinite(signed).all():  # rare: nan_to_num's wrapper costs more than the rest
        signed = np.nan_to_num(signed)
    elements = np.asarray(bids["element"], dtype=object)
    element_index = np.asarray(bids["element_index"])
    located = 0
    for table in ELEMENT_TABLES:
        sel = elements == table
        if sel.any():
            pos = _positions(dn, table, element_index[sel])
            np.add.at(out.p_mw[table], pos, UP_SIGN[table] * signed[sel])
            located += len(pos)
    if located < len(elements):  # some bid on another table (sorting the names costs more)
        unknown = set(elements.tolist()) - set(ELEMENT_TABLES)
        raise ValueError(f"bids on unsupported element tables {sorted(unknown)}")
    return out


def tap_positions(dn: DistributionNetwork, injections: Injections) -> np.ndarray:
    """Tap of every transformer: the injections' own, the network default where missing."""
    taps = np.asarray(injections.trafo_tap_pos, dtype=float)
    default = dn.initial_taps  # one per transformer, read-only here (every power flow asks)
    if taps.shape != default.shape:
        return dn.default_taps()
    return np.where(np.isnan(taps), default, taps)


def write_injections(dn: DistributionNetwork, injections: Injections) -> None:
    """Write set-points into the pandapower tables (so ``dn.net`` reflects the last run)."""
    net = dn.net
    for table in ELEMENT_TABLES:
        if len(net[table]):
            _set_column(net[table], "p_mw", injections.p_mw[table])
            _set_column(net[table], "q_mvar", injections.q_mvar[table])
    if len(net.trafo):
        _set_column(net.trafo, "tap_pos", tap_positions(dn, injections))


def _set_column(df: pd.DataFrame, column: str, values: np.ndarray) -> None:
    """``df[column] = values``: written into the column's own array where it has the same
    type and size (and pandas hands out a writable view of it), else assigned.

    Two power flows per network and period write here, and pandas' column assignment costs
    0.1 ms each: most of a period's writes. The values are the same either way.
    """
    new = np.asarray(values)
    old = df[column].to_numpy()
    if old.dtype != new.dtype or old.shape != new.shape or not old.flags.writeable:
        df[column] = new
    else:
        old[...] = new


def injections_table(dn: DistributionNetwork, injections: Injections) -> pd.DataFrame:
    """Every load, sgen and storage set-point plus every transformer tap of one period.

    Together with the SimBench code this is all that is needed to rebuild the network and
    re-run the power flow (:func:`~.pandapower_reference.replay_power_flow`).
    """
    columns = injections_columns(dn, injections)
    return pd.DataFrame(columns | {"element": pd.array(columns["element"], dtype="string")})


def injections_columns(dn: DistributionNetwork, injections: Injections) -> dict[str, np.ndarray]:
    """The columns of :func:`injections_table` as arrays (``element`` as Python strings): what
    the recorder keeps. Built from arrays in one go (it is recorded two or three times per DSO
    and period; one frame per element table, concatenated, cost about four power flows), the
    rows' labels laid out once per network (:func:`_injection_rows`).
    """
    nt = len(dn.net.trafo)
    element, element_index = _injection_rows(dn)
    no_taps = np.full(len(element) - nt, np.nan)
    no_power = np.full(nt, np.nan)
    set_points = [np.asarray(injections.p_mw[t], dtype=float) for t in ELEMENT_TABLES]
    reactive = [np.asarray(injections.q_mvar[t], dtype=float) for t in ELEMENT_TABLES]
    taps = np.asarray(tap_positions(dn, injections), dtype=float) if nt else np.zeros(0)
    return {
        "element": element,
        "element_index": element_index,
        "p_mw": np.concatenate([*set_points, no_power]),
        "q_mvar": np.concatenate([*reactive, no_power]),
        "tap_pos": np.concatenate([no_taps, taps]),
    }


def _injection_rows(dn: DistributionNetwork) -> tuple[np.ndarray, np.ndarray]:
    """The ``element`` and ``element_index`` columns of a network's injections: every load,
    sgen, storage and transformer in the net's order. The same every period, so kept with the
    network (read-only: every period's columns share them) while the net's indices are the
    same objects, as the state tables' layouts are (:mod:`market_sim.grid.state`)."""
    tables = (*ELEMENT_TABLES, "trafo")
    indices = tuple(dn.net[t].index for t in tables)
    kept = dn.solver_cache.get("injection_rows")
    if kept is not None and all(a is b for a, b in zip(kept[0], indices, strict=True)):
        return kept[1], kept[2]
    sizes = [len(index) for index in indices]
    element = np.repeat(np.array(tables, dtype=object), sizes)
    element_index = np.concatenate([index.to_numpy(dtype=np.int64) for index in indices])
    for column in (element, element_index):
        column.setflags(write=False)
    dn.solver_cache["injection_rows"] = (indices, element, element_index)
    return element, element_index


def apply_table(net: Any, table: pd.DataFrame) -> None:
    """Write an :func:`injections_table` into the tables of a pandapower net."""
    element = table["element"].astype(str).to_numpy()
    for name in ELEMENT_TABLES:
        rows = table[element == name]
        if len(rows):
            idx = rows["element_index"].to_numpy(dtype=np.int64)
            net[name].loc[idx, "p_mw"] = rows["p_mw"].to_numpy(dtype=float)
            net[name].loc[idx, "q_mvar"] = rows["q_mvar"].to_numpy(dtype=float)
    rows = table[element == "trafo"]
    if len(rows):
        idx = rows["element_index"].to_numpy(dtype=np.int64)
        net.trafo.loc[idx, "tap_pos"] = rows["tap_pos"].to_numpy(dtype=float)
