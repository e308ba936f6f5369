"""AC power flow of a distribution network for given injections.

Speed matters here (thousands of power flows per run), and a call to ``pandapower.runpp`` costs
about 30 ms on a SimBench MV network and 110 ms on the 10,458-bus MV-LV one, mostly pandas
bookkeeping around the solver. Repeated power flows therefore run on lightsim2grid's native grid
model (C++ Newton-Raphson with KLU), built once per tap setting from the pandapower net and
checked against ``runpp`` when it is built; each period only sends the changed set-points
(vectorised). Results match ``runpp`` to about
1e-10 pu (the tests check it), and :func:`replay_power_flow` runs plain ``runpp`` as the
reference a researcher can re-run from the injections table alone.

The fast path supports what SimBench distribution networks contain: constant-power loads,
sgens, storages, one ext_grid, bus-bus and branch switches. Networks with ``gen`` elements,
several ext_grids or voltage-dependent loads, networks lightsim2grid does not reproduce, or a
missing lightsim2grid fall back to ``runpp`` (correct, slower, no sensitivities).

Monitored elements (the choice is documented here once): voltage limits apply to in-service
buses below 60 kV, i.e. the MV/LV buses operated by the DSO. The HV side of the HV/MV
transformers belongs to the transmission system and its voltage is the ext_grid set-point.
Loading limits apply to every in-service line and two-winding transformer (HV/MV ones
included: the DSO is responsible for them).
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

try:  # numba is optional at import time (see market_sim.logs); SuperLU's solve is the fallback
    import numba
except ImportError:  # pragma: no cover
    numba = None

from market_sim.grid.network import DistributionNetwork, build_net
from market_sim.types import (
    ELEMENT_TABLES,
    Injections,
    Limits,
    PowerFlowResult,
    signed_mw,
)

try:
    import lightsim2grid
    from lightsim2grid.network import init_from_pandapower
except ImportError:  # the runpp fallback still works without it
    lightsim2grid = None

log = logging.getLogger(__name__)

#: Buses at or above this nominal voltage belong to the transmission side (not monitored).
HV_THRESHOLD_KV = 60.0
#: Slack used when counting limit violations (pu for voltages, percent for loading).
VIOLATION_TOL = 1e-6
#: Newton-Raphson convergence threshold on the largest power mismatch (pu of net.sn_mva).
NR_TOL = 1e-9
NR_MAX_IT = 20
#: Largest no-load voltage difference (pu) to pandapower for which lightsim2grid is trusted.
MODEL_CHECK_TOL = 1e-8

#: Sign of an *up* bid on the pandapower value of each table (injection up = consumption down).
_UP_SIGN = {"load": -1.0, "sgen": 1.0, "storage": -1.0}


# --------------------------------------------------------------------------------------------
# Injections <-> bids <-> net tables


def _positions(net: Any, table: str, index: np.ndarray) -> np.ndarray:
    pos = net[table].index.get_indexer(np.asarray(index))
    if (pos < 0).any():
        bad = np.asarray(index)[pos < 0][:5].tolist()
        raise ValueError(f"bids refer to unknown {table} indices {bad}")
    return pos


def apply_bids(
    dn: DistributionNetwork, injections: Injections, bids: pd.DataFrame, mw_column: str = "mw"
) -> Injections:
    """New injections with every bid row activated by its ``mw_column`` quantity.

    Up means more injection: load and storage p go down, sgen p goes up; down is the opposite.
    """
    out = injections.copy()
    if bids is None or len(bids) == 0:
        return out
    signed = signed_mw(bids["direction"].to_numpy(), bids[mw_column].to_numpy(dtype=float))
    signed = np.nan_to_num(signed)
    elements = bids["element"].to_numpy(dtype=object)
    for table in ELEMENT_TABLES:
        sel = elements == table
        if sel.any():
            pos = _positions(dn.net, table, bids["element_index"].to_numpy()[sel])
            np.add.at(out.p_mw[table], pos, _UP_SIGN[table] * signed[sel])
    unknown = set(np.unique(elements)) - set(ELEMENT_TABLES)
    if unknown:
        raise ValueError(f"bids on unsupported element tables {sorted(unknown)}")
    return out


def _taps(dn: DistributionNetwork, injections: Injections) -> np.ndarray:
    taps = np.asarray(injections.trafo_tap_pos, dtype=float)
    if taps.shape != (len(dn.net.trafo),):
        return dn.default_taps()
    return np.where(np.isnan(taps), dn.default_taps(), taps)


def write_injections(dn: DistributionNetwork, injections: Injections) -> None:
    """Write set-points into the pandapower tables (so ``dn.net`` reflects the last run)."""
    net = dn.net
    for table in ELEMENT_TABLES:
        if len(net[table]):
            net[table]["p_mw"] = injections.p_mw[table]
            net[table]["q_mvar"] = injections.q_mvar[table]
    if len(net.trafo):
        net.trafo["tap_pos"] = _taps(dn, injections)


def injections_table(dn: DistributionNetwork, injections: Injections) -> pd.DataFrame:
    """Every load, sgen and storage set-point plus every transformer tap of one period.

    Together with the SimBench code this is all that is needed to rebuild the network and
    re-run the power flow (:func:`replay_power_flow`).
    """
    net = dn.net
    parts = []
    for table in ELEMENT_TABLES:
        n = len(net[table])
        parts.append(
            pd.DataFrame(
                {
                    "element": table,
                    "element_index": net[table].index.to_numpy(dtype=np.int64),
                    "p_mw": np.asarray(injections.p_mw[table], dtype=float),
                    "q_mvar": np.asarray(injections.q_mvar[table], dtype=float),
                    "tap_pos": np.full(n, np.nan),
                }
            )
        )
    nt = len(net.trafo)
    parts.append(
        pd.DataFrame(
            {
                "element": "trafo",
                "element_index": net.trafo.index.to_numpy(dtype=np.int64),
                "p_mw": np.full(nt, np.nan),
                "q_mvar": np.full(nt, np.nan),
                "tap_pos": _taps(dn, injections),
            }
        )
    )
    out = pd.concat(parts, ignore_index=True)
    out["element"] = out["element"].astype("string")
    return out


# --------------------------------------------------------------------------------------------
# Results and their summary


@dataclass(frozen=True)
class PowerFlowDetail:
    """A power flow summary plus the per-element arrays validation needs.

    Arrays are aligned with ``net.bus`` / ``net.line`` / ``net.trafo`` positional order and are
    NaN for elements that were not computed (out of service, isolated, not converged).
    ``state`` is the solver state for sensitivities (None on the pandapower fallback path).
    """

    result: PowerFlowResult
    vm_pu: np.ndarray
    line_loading_percent: np.ndarray
    trafo_loading_percent: np.ndarray
    state: _State | None = None


def monitored_buses(net: Any) -> np.ndarray:
    """Mask over net.bus of buses with voltage limits (in service, below 60 kV)."""
    return (net.bus["in_service"].to_numpy(dtype=bool)) & (
        net.bus["vn_kv"].to_numpy(dtype=float) < HV_THRESHOLD_KV
    )


def _nan_result() -> PowerFlowResult:
    nan = float("nan")
    return PowerFlowResult(False, nan, nan, nan, nan, 0, 0, 0, nan, nan)


def _failed_detail(net: Any) -> PowerFlowDetail:
    return PowerFlowDetail(
        _nan_result(),
        np.full(len(net.bus), np.nan),
        np.full(len(net.line), np.nan),
        np.full(len(net.trafo), np.nan),
    )


def _max(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else float("nan")


def summarise(
    net: Any,
    vm_pu: np.ndarray,
    line_loading: np.ndarray,
    trafo_loading: np.ndarray,
    ext_p_mw: float,
    ext_q_mvar: float,
    limits: Limits,
) -> PowerFlowResult:
    """Count limit violations of one converged power flow (shared by both solver paths)."""
    vm = np.where(monitored_buses(net), vm_pu, np.nan)
    line = np.where(net.line["in_service"].to_numpy(dtype=bool), line_loading, np.nan)
    trafo = np.where(net.trafo["in_service"].to_numpy(dtype=bool), trafo_loading, np.nan)
    with np.errstate(invalid="ignore"):
        n_v = int(
            np.sum(vm > limits.vm_max_pu + VIOLATION_TOL)
            + np.sum(vm < limits.vm_min_pu - VIOLATION_TOL)
        )
        n_l = int(np.sum(line > limits.max_loading_percent + VIOLATION_TOL))
        n_t = int(np.sum(trafo > limits.max_loading_percent + VIOLATION_TOL))
    fin = vm[np.isfinite(vm)]
    return PowerFlowResult(
        converged=True,
        vm_min_pu=float(fin.min()) if fin.size else float("nan"),
        vm_max_pu=float(fin.max()) if fin.size else float("nan"),
        max_line_loading_percent=_max(line),
        max_trafo_loading_percent=_max(trafo),
        n_voltage_violations=n_v,
        n_line_violations=n_l,
        n_trafo_violations=n_t,
        interface_p_mw=-float(ext_p_mw),
        interface_q_mvar=-float(ext_q_mvar),
    )


# --------------------------------------------------------------------------------------------
# Fast path: lightsim2grid's native grid model, one per tap setting


@dataclass
class _Model:
    """A lightsim2grid grid for one tap setting, with the maps between it and ``net``.

    Three bus labellings meet here: ``net.bus`` positions, lightsim2grid's grid-model buses
    (one per bus of the fused solver net, i.e. per ``net.bus`` position whose bus-bus switches
    were merged into it) and its solver buses (the energised ones, in solver order). Sensitivity
    arrays are in solver buses; :func:`element_case_bus` maps elements onto them.
    """

    grid: Any  # lightsim2grid LSGrid
    base_mva: float
    v0: np.ndarray  # grid-model labelled no-load solution: the deterministic start
    to_grid: np.ndarray  # solver bus -> grid-model bus
    ybus: sp.csc_matrix  # solver labelled
    ref: np.ndarray
    pvpq: np.ndarray
    pq: np.ndarray
    bus_idx: np.ndarray  # net.bus position -> solver bus, -1 if not energised
    elem_idx: dict[str, np.ndarray]  # element position -> solver bus, -1 if not connected
    scaling: dict[str, np.ndarray]  # pandapower's ``scaling`` column per element table
    sent: dict[str, np.ndarray]  # set-points last sent to ``grid`` ("load_p", "sgen_q", ...)
    line_rating: np.ndarray  # kA behind 100 % loading
    trafo_rating: np.ndarray  # MVA behind 100 % loading, over sqrt(3)
    trafo_vn: np.ndarray  # [n_trafo, 2] rated kV at hv / lv side
    bus_kv: np.ndarray  # solver bus -> nominal kV
    a_pos: np.ndarray  # solver bus -> index of its angle in the NR state, -1 if none
    m_pos: np.ndarray  # solver bus -> index of its magnitude in the NR state, -1 if none
    jac_pattern: tuple | None = None
    branch_y: dict[str, tuple] = field(default_factory=dict)


@dataclass(frozen=True)
class _State:
    model: _Model
    v: np.ndarray  # solver labelled


def _fast_path_supported(net: Any) -> str:
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


def _fused_bus(net: Any) -> np.ndarray:
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


def _solver_net(net: Any) -> tuple[Any, np.ndarray, list[tuple[str, int, int]]]:
    """A copy of ``net`` lightsim2grid can read, built once per network.

    Buses are renumbered to their positions (lightsim2grid's converter mislabels buses of a
    non-contiguous index), closed bus-bus switches are fused, switches are dropped and open
    line / trafo switches are returned as (table, position, side) to open that branch end in
    the grid, which is pandapower's auxiliary-bus model of an open switch.
    """
    fused = _fused_bus(net)
    s = copy.deepcopy(net)
    bus_pos = net.bus.index
    for table, cols in (
        ("line", ("from_bus", "to_bus")),
        ("trafo", ("hv_bus", "lv_bus")),
        ("load", ("bus",)),
        ("sgen", ("bus",)),
        ("storage", ("bus",)),
        ("ext_grid", ("bus",)),
        ("shunt", ("bus",)),
        ("gen", ("bus",)),
    ):
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
    sw = net.switch
    open_ends = []
    for et, table, first_bus in (("l", "line", "from_bus"), ("t", "trafo", "hv_bus")):
        sel = sw[(sw["et"] == et) & ~sw["closed"].astype(bool)]
        pos = net[table].index.get_indexer(sel["element"].to_numpy())
        side = np.where(sel["bus"].to_numpy() == net[table][first_bus].to_numpy()[pos], 1, 2)
        open_ends += [(table, int(p), int(k)) for p, k in zip(pos, side, strict=True)]
    s.switch = s.switch.iloc[0:0]
    return s, fused, open_ends


def _set_injections(model: _Model, injections: Injections) -> None:
    """Send the set-points that changed since the last power flow to the grid, vectorised.

    lightsim2grid takes float32 arrays here: the rounding (1e-7 relative) moves voltages by
    about 1e-10 pu, far below the 1e-6 pu the results are compared at.
    """
    grid = model.grid
    update = {
        "load_p": grid.update_loads_p,
        "load_q": grid.update_loads_q,
        "sgen_p": grid.update_sgens_p,
        "storage_p": grid.update_storages_p,
    }
    per_element = {"sgen_q": grid.change_q_sgen, "storage_q": grid.change_q_storage}
    for table in ELEMENT_TABLES:
        if not len(model.scaling[table]):
            continue
        for kind, values in (("p", injections.p_mw[table]), ("q", injections.q_mvar[table])):
            key = f"{table}_{kind}"
            new = (np.asarray(values, dtype=float) * model.scaling[table]).astype(np.float32)
            changed = new != model.sent[key]
            if not changed.any():
                continue
            if key in update:
                update[key](changed, new)
            else:
                for i in np.flatnonzero(changed):
                    per_element[key](int(i), float(new[i]))
            model.sent[key] = new


def _solve(model: _Model, v_start: np.ndarray) -> np.ndarray | None:
    """lightsim2grid Newton-Raphson from ``v_start``; the grid-model voltages or None."""
    try:
        v = model.grid.ac_pf(v_start.copy(), NR_MAX_IT, NR_TOL)
    except Exception as exc:  # singular Jacobian and the like
        log.debug("lightsim2grid power flow failed: %s", exc)
        return None
    if len(v) == 0 or not np.all(np.isfinite(v[model.to_grid])):
        return None
    return v


def _no_load_grid(
    snet: Any, open_ends: list[tuple[str, int, int]], vm_ext: float
) -> tuple[Any, np.ndarray]:
    """lightsim2grid grid of the solver net (set-points at zero) and its no-load voltages."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # about the switches it ignores: handled here
        # "pandapower_v2" is the transformer model that reproduces pandapower 3.5's runpp
        # (to 1e-10 pu at any tap); the "pandapower_v3" one is off by about 2e-5 pu.
        grid = init_from_pandapower(snet, pp_orig_file="pandapower_v2")
    grid.set_synch_status_both_side(False)
    opener = {
        ("line", 1): grid.deactivate_powerline_side1,
        ("line", 2): grid.deactivate_powerline_side2,
        ("trafo", 1): grid.deactivate_trafo_side1,
        ("trafo", 2): grid.deactivate_trafo_side2,
    }
    for table, pos, side in open_ends:
        opener[table, side](pos)
    grid.consider_only_main_component(False)  # islands are not solved, as in pandapower
    v_flat = np.full(grid.total_bus(), vm_ext, dtype=complex)
    # A DC power flow first puts the angles of the phase-shifting (150 degree) trafos in.
    v_dc = grid.dc_pf(v_flat.copy(), NR_MAX_IT, NR_TOL)
    start = v_dc if len(v_dc) == len(v_flat) and np.all(np.isfinite(v_dc)) else v_flat
    v0 = grid.ac_pf(start.copy(), NR_MAX_IT, NR_TOL)
    if len(v0) == 0:
        raise RuntimeError("no no-load solution")
    return grid, v0


def _build_model(dn: DistributionNetwork, taps: np.ndarray) -> _Model:
    """Build the lightsim2grid grid for ``taps`` and check it against pandapower at no load.

    pandapower's ``runpp`` of the same tap setting with every load/sgen/storage at zero is the
    reference (it converges for any scenario); a grid whose no-load voltages differ from it by
    more than :data:`MODEL_CHECK_TOL` means the conversion misses something of this network,
    and the network falls back to ``runpp``. The checked no-load solution is also the
    deterministic start of later power flows.
    """
    net = dn.net
    cache = dn.solver_cache
    if "solver_net" not in cache:
        cache["solver_net"] = _solver_net(net)
    snet, fused, open_ends = cache["solver_net"]
    saved = {t: net[t][["p_mw", "q_mvar"]].copy() for t in ELEMENT_TABLES if len(net[t])}
    saved_taps = net.trafo["tap_pos"].copy()
    try:
        for t in saved:
            net[t]["p_mw"] = 0.0
            net[t]["q_mvar"] = 0.0
        net.trafo["tap_pos"] = taps
        pp.runpp(net, numba=False, calculate_voltage_angles=True, init="dc")
        vm_ref = net.res_bus["vm_pu"].to_numpy(dtype=float)
    finally:
        for t, df in saved.items():
            net[t]["p_mw"] = df["p_mw"].to_numpy()
            net[t]["q_mvar"] = df["q_mvar"].to_numpy()
        net.trafo["tap_pos"] = saved_taps

    for t in ELEMENT_TABLES:
        snet[t]["p_mw"] = 0.0
        snet[t]["q_mvar"] = 0.0
    snet.trafo["tap_pos"] = taps
    try:
        grid, v0 = _no_load_grid(snet, open_ends, float(net.ext_grid["vm_pu"].iloc[0]))
    except Exception as exc:  # the converter refuses the net, or finds no solution
        raise _Unsupported(f"lightsim2grid conversion failed: {exc}") from exc

    to_grid = np.asarray(grid.id_ac_solver_to_me(), dtype=np.int64)
    solver_of = np.full(len(v0), -1, dtype=np.int64)
    solver_of[to_grid] = np.arange(len(to_grid))
    bus_in = net.bus["in_service"].to_numpy(dtype=bool)
    bus_idx = np.where(bus_in, solver_of[fused], -1)
    vm = np.where(bus_idx >= 0, np.abs(v0[fused]), np.nan)
    if not np.array_equal(np.isnan(vm), np.isnan(vm_ref)) or (
        np.nanmax(np.abs(vm - vm_ref), initial=0.0) > MODEL_CHECK_TOL
    ):
        raise _Unsupported("lightsim2grid's no-load voltages differ from pandapower's")

    elem_idx, scaling, sent = {}, {}, {}
    for table in ELEMENT_TABLES:
        df = net[table]
        pos = net.bus.index.get_indexer(df["bus"].to_numpy())
        in_service = df["in_service"].to_numpy(dtype=bool)
        elem_idx[table] = np.where(in_service, bus_idx[pos], -1) if len(df) else pos
        scale = df["scaling"].to_numpy(dtype=float) if "scaling" in df else np.ones(len(df))
        scaling[table] = np.nan_to_num(scale, nan=1.0)
        sent[f"{table}_p"] = np.zeros(len(df), dtype=np.float32)
        sent[f"{table}_q"] = np.zeros(len(df), dtype=np.float32)

    pv = np.asarray(grid.get_pv_solver(), dtype=np.int64)
    pq = np.asarray(grid.get_pq_solver(), dtype=np.int64)
    ref = np.asarray(grid.get_slack_ids_solver(), dtype=np.int64)
    pvpq = np.r_[pv, pq]
    a_pos = np.full(len(to_grid), -1, dtype=np.int64)
    a_pos[pvpq] = np.arange(len(pvpq))
    m_pos = np.full(len(to_grid), -1, dtype=np.int64)
    m_pos[pq] = len(pvpq) + np.arange(len(pq))
    line, trafo = net.line, net.trafo
    return _Model(
        grid=grid,
        base_mva=float(net.sn_mva),
        v0=v0,
        to_grid=to_grid,
        ybus=sp.csc_matrix(grid.get_Ybus_solver()),
        ref=ref,
        pvpq=pvpq,
        pq=pq,
        bus_idx=bus_idx,
        elem_idx=elem_idx,
        scaling=scaling,
        sent=sent,
        line_rating=(line["max_i_ka"] * line["df"] * line["parallel"]).to_numpy(dtype=float),
        trafo_rating=(trafo["sn_mva"] * trafo["df"] * trafo["parallel"]).to_numpy(dtype=float)
        / np.sqrt(3),
        trafo_vn=trafo[["vn_hv_kv", "vn_lv_kv"]].to_numpy(dtype=float),
        bus_kv=np.asarray(grid.get_bus_vn_kv(), dtype=float)[to_grid],
        a_pos=a_pos,
        m_pos=m_pos,
    )


class _Unsupported(RuntimeError):
    """lightsim2grid cannot reproduce pandapower on this network."""


def _model_for(dn: DistributionNetwork, taps: np.ndarray) -> _Model | None:
    """The cached grid of this tap setting; None once the network uses ``runpp`` instead."""
    cache = dn.solver_cache
    if "fast" not in cache:
        why = _fast_path_supported(dn.net)
        cache["fast"] = not why
        if why:
            log.debug("%s: lightsim2grid unsupported (%s), using pandapower runpp", dn.code, why)
    if not cache["fast"]:
        return None
    models = cache.setdefault("models", {})
    key = tuple(np.round(taps, 6).tolist())
    if key not in models:
        try:
            models[key] = _build_model(dn, taps)
        except _Unsupported as exc:
            log.debug("%s: %s, using pandapower runpp", dn.code, exc)
            cache["fast"] = False
            return None
    return models[key]


def _jacobian_pattern(model: _Model) -> tuple[np.ndarray, ...]:
    """Index arrays that map Ybus entries and bus diagonals onto Jacobian entries.

    Computed once per model so that each Jacobian fills numbers into a fixed pattern instead
    of slicing sparse matrices.
    """
    y = model.ybus.tocoo()
    n = model.ybus.shape[0]
    r = np.r_[y.row, np.arange(n)].astype(np.int64)
    c = np.r_[y.col, np.arange(n)].astype(np.int64)
    a, m = model.a_pos, model.m_pos
    blocks = []  # (entry mask, J rows, J cols) for the four blocks
    for row_map, col_map in ((a, a), (a, m), (m, a), (m, m)):
        sel = (row_map[r] >= 0) & (col_map[c] >= 0)
        blocks.append((sel, row_map[r[sel]], col_map[c[sel]]))
    rows = np.concatenate([b[1] for b in blocks])
    cols = np.concatenate([b[2] for b in blocks])
    return y.row.astype(np.int64), y.col.astype(np.int64), y.data, blocks, rows, cols


def jacobian(model: _Model, v: np.ndarray) -> sp.csc_matrix:
    """Polar power-flow Jacobian d[P(pvpq), Q(pq)] / d[Va(pvpq), Vm(pq)] in pu, solver buses.

    Built at the converged voltages rather than taken from lightsim2grid (``get_J_solver``),
    which holds the Jacobian of the last iteration, before the final update, and none when a
    warm start converges without iterating. Same formulas as pypower's dSbus_dV:
    dS/dVa = j diag(V) conj(diag(I) - Y diag(V)),
    dS/dVm = diag(V) conj(Y diag(V/|V|)) + conj(diag(I)) diag(V/|V|).
    """
    if model.jac_pattern is None:
        model.jac_pattern = _jacobian_pattern(model)
    yr, yc, yd, blocks, rows, cols = model.jac_pattern
    ibus = model.ybus @ v
    vnorm = v / np.abs(v)
    ds_dva = np.r_[-1j * v[yr] * np.conj(yd * v[yc]), 1j * v * np.conj(ibus)]
    ds_dvm = np.r_[v[yr] * np.conj(yd * vnorm[yc]), np.conj(ibus) * vnorm]
    parts = (ds_dva.real, ds_dvm.real, ds_dva.imag, ds_dvm.imag)
    data = np.concatenate([part[b[0]] for part, b in zip(parts, blocks, strict=True)])
    size = len(model.pvpq) + len(model.pq)
    return sp.csc_matrix((data, (rows, cols)), shape=(size, size))


def _run_fast(
    dn: DistributionNetwork,
    model: _Model,
    injections: Injections,
    limits: Limits,
    v_start: np.ndarray | None = None,
) -> PowerFlowDetail:
    """One lightsim2grid power flow from ``v_start``, by default from the no-load solution.

    The default start is fixed rather than the last solution, so that a run's results do not
    depend on what was solved before in the same process (equal seeds give bitwise equal
    tables); it costs about one Newton iteration. A failed warm start is retried from it.
    """
    net = dn.net
    grid = model.grid
    _set_injections(model, injections)
    v = _solve(model, model.v0 if v_start is None else v_start)
    if v is None and v_start is not None:
        v = _solve(model, model.v0)
    if v is None:
        log.debug("%s: power flow did not converge", dn.code)
        return _failed_detail(net)

    vm = np.where(
        model.bus_idx >= 0, np.abs(v[model.to_grid[np.maximum(model.bus_idx, 0)]]), np.nan
    )
    line_ld = np.maximum(grid.get_line_res1()[3], grid.get_line_res2()[3]) / model.line_rating
    line_ld = np.where(grid.get_lines_status(), line_ld * 100.0, np.nan)
    # pandapower's "current" trafo loading: i_ka * vn_kv * sqrt3 / sn_mva / parallel / df.
    i_hv, i_lv = grid.get_trafo_res1()[3], grid.get_trafo_res2()[3]
    trafo_ld = np.maximum(i_hv * model.trafo_vn[:, 0], i_lv * model.trafo_vn[:, 1])
    trafo_ld = np.where(grid.get_trafo_status(), trafo_ld / model.trafo_rating * 100.0, np.nan)
    p_ext, q_ext, _ = grid.get_gen_res()
    result = summarise(net, vm, line_ld, trafo_ld, p_ext.sum(), q_ext.sum(), limits)
    return PowerFlowDetail(result, vm, line_ld, trafo_ld, _State(model, v[model.to_grid]))


def element_case_bus(detail: PowerFlowDetail, table: str, positions: np.ndarray) -> np.ndarray:
    """Solver bus of elements (by table position); -1 if disconnected or no fast model."""
    if detail.state is None:
        return np.full(len(positions), -1, dtype=np.int64)
    return detail.state.model.elem_idx[table][np.asarray(positions, dtype=np.int64)]


def _branch_admittances(model: _Model, kind: str) -> tuple[np.ndarray, ...]:
    """Solver buses at both ends and the effective two-port admittances of every branch.

    Read once per model from the lightsim2grid grid (half-open branches are already reduced
    to the admittance at their connected end); used for the current gradients.
    """
    if kind not in model.branch_y:
        el = model.grid.get_lines() if kind == "line" else model.grid.get_2_windings_transformers()
        solver_of = np.full(len(model.v0), -1, dtype=np.int64)
        solver_of[model.to_grid] = np.arange(len(model.to_grid))

        def side(ids: Any) -> np.ndarray:
            ids = np.asarray(ids, dtype=np.int64)
            return np.where(ids >= 0, solver_of[np.maximum(ids, 0)], -1)

        model.branch_y[kind] = (
            side(el.get_bus_id_side_1()),
            side(el.get_bus_id_side_2()),
            *(
                np.asarray(f(), dtype=complex)
                for f in (
                    el.get_yac_eff_11,
                    el.get_yac_eff_12,
                    el.get_yac_eff_21,
                    el.get_yac_eff_22,
                )
            ),
        )
    return model.branch_y[kind]


def branch_loading_gradient(
    model: _Model, v: np.ndarray, vnorm: np.ndarray, kind: str, pos: int, out: np.ndarray
) -> None:
    """Add d(loading %)/d(power-flow state) of one line or transformer into ``out``.

    The loading is that of the branch end with the larger loading, as in the power flow's
    summary; ``out`` is indexed like the Jacobian's state (angles, then magnitudes).
    """
    b1, b2, y11, y12, y21, y22 = _branch_admittances(model, kind)
    ends = []  # (current pu, loading per pu of current, {solver bus: admittance})
    for end, bus, (ya, yb) in ((0, b1, (y11, y12)), (1, b2, (y21, y22))):
        terms = {int(b): y for b, y in ((b1[pos], ya[pos]), (b2[pos], yb[pos])) if b >= 0}
        if bus[pos] < 0 or not terms:
            continue
        current = sum(y * v[b] for b, y in terms.items())
        kv = model.bus_kv[bus[pos]]
        if kind == "line":
            k = model.base_mva / (np.sqrt(3) * kv) / model.line_rating[pos] * 100.0
        else:
            k = model.base_mva / (np.sqrt(3) * kv) * model.trafo_vn[pos, end]
            k = k / model.trafo_rating[pos] * 100.0
        ends.append((current, k, terms))
    if not ends:
        return
    current, k, terms = max(ends, key=lambda e: abs(e[0]) * e[1])
    if abs(current) == 0:
        return
    cols = np.fromiter(terms, dtype=np.int64)
    y = np.fromiter(terms.values(), dtype=complex)
    d_va = 1j * y * v[cols]
    d_vm = y * vnorm[cols]
    scale = k / abs(current)
    a, m = model.a_pos[cols], model.m_pos[cols]
    np.add.at(out, a[a >= 0], scale * np.real(np.conj(current) * d_va[a >= 0]))
    np.add.at(out, m[m >= 0], scale * np.real(np.conj(current) * d_vm[m >= 0]))


def injection_sensitivities(
    detail: PowerFlowDetail,
    constraints: list[tuple[str, int]],
    buses: np.ndarray | None = None,
    reuse: dict | None = None,
    reuse_tol: float = 0.0,
) -> np.ndarray | None:
    """d(constraint value) / d(active injection in MW) at every solver bus.

    ``constraints`` are ``("vm", bus position)``, ``("line", line position)`` or
    ``("trafo", trafo position)``; values are |V| in pu and loading in percent (at the branch
    end that carries the larger loading). One adjoint solve J^T lambda = dg/dx per constraint,
    all with a single LU factorisation, gives the row of the whole network at once. Returns
    an array ``[n_constraints, n_solver_buses]``, or None on the pandapower fallback path.

    ``buses`` (solver buses, -1 for none) selects the columns returned, in that order (0 for
    -1): validation needs only the buses with bids, and on the 10k-bus grid writing the full
    ``[k, 10k]`` array costs more than the columns it needs. The Jacobian is ordered by
    minimum degree on J^T + J, which fills less than the default on these (radial,
    symmetric-pattern) networks and so speeds up the many transposed solves.

    ``reuse`` (a dict owned by the caller, empty at first) keeps the last factorisation: while
    no solver-bus voltage moved more than ``reuse_tol`` (pu, complex) from the point where it
    was factorised, the solves use it (with the gradients at the new point) instead of a new
    factorisation, which costs more than the solves. The sensitivities are then those of a
    nearby point: good for a linearisation that an AC power flow checks anyway.
    """
    state = detail.state
    if state is None or not constraints:
        return None
    model, v = state.model, state.v
    n_state = len(model.pvpq) + len(model.pq)
    grad = np.zeros((n_state, len(constraints)))
    vnorm = v / np.abs(v)
    for j, (kind, pos) in enumerate(constraints):
        if kind == "vm":
            m = model.m_pos[model.bus_idx[pos]] if model.bus_idx[pos] >= 0 else -1
            if m >= 0:
                grad[m, j] = 1.0
            continue
        branch_loading_gradient(model, v, vnorm, kind, pos, grad[:, j])
    reuse = {} if reuse is None else reuse
    if reuse.get("model") is not model or np.max(np.abs(v - reuse["v"]), initial=0.0) > reuse_tol:
        reuse.update(model=model, v=v.copy(), lu=_factorise(jacobian(model, v)))
    if buses is None:
        has_p = model.a_pos >= 0
        lam = _adjoint_solve(reuse["lu"], grad, model.a_pos[has_p])
        out = np.zeros((len(constraints), len(v)))
        out[:, has_p] = lam.T / model.base_mva
        return out
    buses = np.asarray(buses, dtype=np.int64)
    a = np.where(buses >= 0, model.a_pos[np.maximum(buses, 0)], -1)
    out = _adjoint_solve(reuse["lu"], grad, np.maximum(a, 0)).T / model.base_mva
    out[:, a < 0] = 0.0
    return out


def _factorise(jac: sp.csc_matrix) -> tuple:
    """SuperLU factors of ``jac`` with the CSC arrays of L and U read out once."""
    lu = spla.splu(jac, permc_spec="MMD_AT_PLUS_A")
    low, up = lu.L, lu.U
    return lu, (low.indptr, low.indices, low.data, up.indptr, up.indices, up.data)


def _adjoint_solve(factors: tuple, grad: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of ``J^-T grad`` from :func:`_factorise`, all right-hand sides at once.

    SuperLU's own multi-RHS transposed solve spends about 0.8 ms per right-hand side on the
    10k-bus grid (its supernodes are tiny on a radial network, so it runs column by column);
    the same triangular solves over the factors with every right-hand side in the inner loop
    (contiguous rows, one pass over L and U) take about a twentieth of that. With
    ``Pr J Pc = L U``: ``J^T = Pc U^T L^T Pr``, so ``x = Pr^T L^-T U^-T Pc^T grad``.
    """
    lu, arrays = factors
    if numba is None:  # pragma: no cover
        return lu.solve(grad, trans="T")[rows]
    b = np.empty(grad.shape)
    b[lu.perm_c] = grad  # Pc^T grad
    _solve_lu_transposed(*arrays, b)
    return b[lu.perm_r[rows]]  # Pr^T, only the rows asked for


def _solve_lu_transposed_py(l_ptr, l_idx, l_val, u_ptr, u_idx, u_val, b) -> None:
    """In place ``b <- L^-T U^-T b`` for CSC factors (L unit lower, U upper triangular).

    Column i of U is row i of U^T (forward substitution), column i of L is row i of L^T
    (backward substitution, unit diagonal). Each update of a row of ``b`` runs over all
    right-hand sides, which are contiguous. Fixed loop order: bit-identical results.
    """
    n, k = b.shape
    acc = np.empty(k)
    for i in range(n):
        diag = 1.0
        for c in range(k):
            acc[c] = b[i, c]
        for p in range(u_ptr[i], u_ptr[i + 1]):
            j = u_idx[p]
            if j == i:
                diag = u_val[p]
            else:
                val = u_val[p]
                for c in range(k):
                    acc[c] -= val * b[j, c]
        for c in range(k):
            b[i, c] = acc[c] / diag
    for i in range(n - 1, -1, -1):
        for c in range(k):
            acc[c] = b[i, c]
        for p in range(l_ptr[i], l_ptr[i + 1]):
            j = l_idx[p]
            if j != i:
                val = l_val[p]
                for c in range(k):
                    acc[c] -= val * b[j, c]
        for c in range(k):
            b[i, c] = acc[c]


_solve_lu_transposed = (
    numba.njit(cache=True, nogil=True)(_solve_lu_transposed_py) if numba is not None else None
)


# --------------------------------------------------------------------------------------------
# Reference path: pandapower runpp


def _run_pandapower(net: Any, limits: Limits, code: str = "") -> PowerFlowDetail:
    try:
        pp.runpp(net, numba=False, calculate_voltage_angles=True, init="dc")
    except Exception as exc:  # LoadflowNotConverged and solver errors
        log.debug("%s: pandapower runpp failed: %s", code, exc)
        return _failed_detail(net)
    if not net.converged:
        return _failed_detail(net)
    vm = net.res_bus["vm_pu"].to_numpy(dtype=float)
    line = net.res_line["loading_percent"].to_numpy(dtype=float)
    trafo = net.res_trafo["loading_percent"].to_numpy(dtype=float)
    p_ext = float(net.res_ext_grid["p_mw"].sum())
    q_ext = float(net.res_ext_grid["q_mvar"].sum())
    return PowerFlowDetail(summarise(net, vm, line, trafo, p_ext, q_ext, limits), vm, line, trafo)


# --------------------------------------------------------------------------------------------
# Public entry points


def run_power_flow_detailed(
    dn: DistributionNetwork,
    injections: Injections,
    limits: Limits,
    write: bool = True,
    warm_start: PowerFlowDetail | None = None,
) -> PowerFlowDetail:
    """AC power flow with per-bus/branch arrays; never raises on non-convergence.

    ``write=False`` skips copying the set-points into ``dn.net`` (inner loops do not need it).
    ``warm_start`` starts Newton-Raphson from that earlier solution of the same network
    instead of the last one solved (validation moves the set-points a little around it).
    """
    if write or _model_for(dn, _taps(dn, injections)) is None:
        write_injections(dn, injections)
    try:
        model = _model_for(dn, _taps(dn, injections))
    except Exception as exc:
        log.debug("%s: building the power-flow model failed: %s", dn.code, exc)
        return _failed_detail(dn.net)
    if model is None:
        return _run_pandapower(dn.net, limits, dn.code)
    state = warm_start.state if warm_start is not None else None
    v_start = None
    if state is not None and state.model is model:
        v_start = model.v0.copy()
        v_start[model.to_grid] = state.v
    return _run_fast(dn, model, injections, limits, v_start)


def run_power_flow(
    dn: DistributionNetwork, injections: Injections, limits: Limits
) -> PowerFlowResult:
    """AC power flow summary of ``injections`` on ``dn`` (converged=False instead of raising)."""
    return run_power_flow_detailed(dn, injections, limits).result


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


def replay_power_flow(
    code: str, table: pd.DataFrame, limits: Limits | None = None
) -> PowerFlowResult:
    """Rebuild network ``code`` fresh from SimBench, apply ``table`` and run pandapower.

    This is the reference computation a researcher can repeat from the saved injections table
    and the SimBench code alone. Scenario scaling does not matter: the table holds absolute
    set-points, and rated sizes do not enter the power flow.
    """
    net = build_net(code, use_cache=False)
    apply_table(net, table)
    return _run_pandapower(net, limits or Limits(), code).result


__all__ = [
    "PowerFlowDetail",
    "apply_bids",
    "apply_table",
    "element_case_bus",
    "injection_sensitivities",
    "injections_table",
    "jacobian",
    "monitored_buses",
    "replay_power_flow",
    "run_power_flow",
    "run_power_flow_detailed",
    "summarise",
    "write_injections",
]
