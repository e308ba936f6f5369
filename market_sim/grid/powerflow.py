"""AC power flow of a distribution network for given injections.

Speed matters here (thousands of power flows per run), and a call to ``pandapower.runpp`` costs
about 15-30 ms on a SimBench MV network, almost all of it pandas bookkeeping around a solver
that needs well under 1 ms. We therefore let pandapower build its internal power-flow case
(``net._ppc["internal"]``: admittance matrices, bus fusion of closed bus-bus switches, auxiliary
buses of open line switches) once per tap setting, and then solve only the Newton-Raphson
equations ourselves with scipy. The result is identical to ``runpp`` up to the solver
tolerance; the tests check it, and :func:`replay_power_flow` runs plain ``runpp`` as the
reference a researcher can re-run from the injections table alone.

The fast path supports what SimBench distribution networks contain: constant-power loads,
sgens, storages and one or more ext_grids. Networks with ``gen`` elements or voltage-dependent
loads fall back to ``runpp`` (correct, slower, no sensitivities).

Monitored elements (the choice is documented here once): voltage limits apply to in-service
buses below 60 kV, i.e. the MV/LV buses operated by the DSO. The HV side of the HV/MV
transformers belongs to the transmission system and its voltage is the ext_grid set-point.
Loading limits apply to every in-service line and two-winding transformer (HV/MV ones
included: the DSO is responsible for them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from pandapower.pypower.idx_bus import BASE_KV, PD, QD

from market_sim.grid.network import DistributionNetwork, build_net
from market_sim.types import (
    ELEMENT_TABLES,
    Injections,
    Limits,
    PowerFlowResult,
    signed_mw,
)

log = logging.getLogger(__name__)

#: Buses at or above this nominal voltage belong to the transmission side (not monitored).
HV_THRESHOLD_KV = 60.0
#: Slack used when counting limit violations (pu for voltages, percent for loading).
VIOLATION_TOL = 1e-6
#: Newton-Raphson convergence threshold on the largest power mismatch (pu of net.sn_mva).
NR_TOL = 1e-9
NR_MAX_IT = 20

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
# Fast path: compiled admittance model + Newton-Raphson


@dataclass
class _Model:
    """pandapower's internal case for one tap setting, with element -> case-bus maps."""

    ybus: sp.csr_matrix
    yf: sp.csr_matrix
    yt: sp.csr_matrix
    base_mva: float
    ref: np.ndarray
    pvpq: np.ndarray
    pq: np.ndarray
    v0: np.ndarray
    sbus_other: np.ndarray  # constant injections not from load/sgen/storage (pu)
    bus_idx: np.ndarray  # net.bus position -> case bus, -1 if not in the case
    elem_idx: dict[str, np.ndarray]  # element position -> case bus, -1 if not connected
    line_row: np.ndarray  # net.line position -> case branch row, -1 if absent
    line_k: np.ndarray  # [n_line, 2] pu current -> loading percent at from / to end
    trafo_row: np.ndarray
    trafo_k: np.ndarray
    a_pos: np.ndarray  # case bus -> index of its angle in the NR state, -1 if none
    m_pos: np.ndarray  # case bus -> index of its magnitude in the NR state, -1 if none
    jac_pattern: tuple | None = None


@dataclass(frozen=True)
class _State:
    model: _Model
    v: np.ndarray
    sbus: np.ndarray


def _fast_path_supported(net: Any) -> bool:
    if len(net.gen) and net.gen["in_service"].any():
        return False
    cols = [c for c in net.load.columns if c.startswith("const_")]
    return not (len(net.load) and cols and np.abs(net.load[cols].to_numpy(float)).sum() > 0)


def _element_sbus(model: _Model, injections: Injections, n_bus: int) -> np.ndarray:
    s = np.zeros(n_bus, dtype=complex)
    for table in ELEMENT_TABLES:
        idx = model.elem_idx[table]
        ok = idx >= 0
        if not ok.any():
            continue
        sign = 1.0 if table == "sgen" else -1.0
        val = injections.p_mw[table][ok] + 1j * injections.q_mvar[table][ok]
        s += sign * np.bincount(idx[ok], weights=val.real, minlength=n_bus)
        s += 1j * sign * np.bincount(idx[ok], weights=val.imag, minlength=n_bus)
    return s / model.base_mva


def _build_model(dn: DistributionNetwork, taps: np.ndarray) -> _Model:
    """Let pandapower build its internal case at no load and keep what the solver needs.

    The build runs with all load/sgen/storage set-points at zero so that it converges for any
    scenario, and its solution is the (deterministic) start of every later Newton-Raphson.
    """
    net = dn.net
    saved = {t: net[t][["p_mw", "q_mvar"]].copy() for t in ELEMENT_TABLES if len(net[t])}
    saved_taps = net.trafo["tap_pos"].copy()
    try:
        for t in saved:
            net[t]["p_mw"] = 0.0
            net[t]["q_mvar"] = 0.0
        net.trafo["tap_pos"] = taps
        pp.runpp(net, numba=False, calculate_voltage_angles=True, init="dc")
        ppci = net._ppc["internal"]
        lookup = net._pd2ppc_lookups["bus"]
        branch_lookup = net._pd2ppc_lookups["branch"]
    finally:
        for t, df in saved.items():
            net[t]["p_mw"] = df["p_mw"].to_numpy()
            net[t]["q_mvar"] = df["q_mvar"].to_numpy()
        net.trafo["tap_pos"] = saved_taps

    n_bus = ppci["bus"].shape[0]
    base_mva = float(ppci["baseMVA"])
    bus_in = net.bus["in_service"].to_numpy(dtype=bool)
    bus_idx = np.asarray(lookup[net.bus.index.to_numpy()], dtype=np.int64)
    bus_idx = np.where((bus_idx >= 0) & (bus_idx < n_bus) & bus_in, bus_idx, -1)
    pos_of_bus = pd.Series(np.arange(len(net.bus)), index=net.bus.index)

    elem_idx = {}
    for table in ELEMENT_TABLES:
        df = net[table]
        if not len(df):
            elem_idx[table] = np.zeros(0, dtype=np.int64)
            continue
        idx = bus_idx[pos_of_bus.loc[df["bus"].to_numpy()].to_numpy()]
        elem_idx[table] = np.where(df["in_service"].to_numpy(dtype=bool), idx, -1)

    branch_is = np.asarray(ppci["branch_is"], dtype=bool)
    case_row = np.where(branch_is, np.cumsum(branch_is) - 1, -1)
    base_kv = ppci["bus"][:, BASE_KV].real
    fbus = ppci["branch"][:, 0].real.astype(np.int64)
    tbus = ppci["branch"][:, 1].real.astype(np.int64)

    def rows_and_k(table: str, rating: np.ndarray, vn: np.ndarray | None) -> tuple:
        n = len(net[table])
        if table not in branch_lookup or n == 0:
            return np.full(n, -1, dtype=np.int64), np.zeros((n, 2))
        f, t = branch_lookup[table]
        rows = case_row[f:t]
        ok = rows >= 0
        k = np.zeros((n, 2))
        for end, buses in ((0, fbus), (1, tbus)):
            kv = np.ones(n)
            kv[ok] = base_kv[buses[rows[ok]]]
            scale = vn[:, end] if vn is not None else 1.0
            # |I| [pu] * base_mva / (sqrt3 * kV) is kA, as pandapower computes it.
            k[:, end] = base_mva / (np.sqrt(3) * kv) * scale / rating * 100.0
        return rows, k

    line = net.line
    line_rating = (line["max_i_ka"] * line["df"] * line["parallel"]).to_numpy(dtype=float)
    line_row, line_k = rows_and_k("line", line_rating, None)
    trafo = net.trafo
    # pandapower "current" trafo loading: i_ka * vn_kv * sqrt3 / sn_mva / parallel / df.
    trafo_rating = (trafo["sn_mva"] * trafo["parallel"] * trafo["df"]).to_numpy(dtype=float)
    vn = trafo[["vn_hv_kv", "vn_lv_kv"]].to_numpy(dtype=float)
    trafo_row, trafo_k = rows_and_k("trafo", trafo_rating / np.sqrt(3), vn)

    ref = np.asarray(ppci["ref"], dtype=np.int64)
    pv = np.asarray(ppci["pv"], dtype=np.int64)
    pq = np.asarray(ppci["pq"], dtype=np.int64)
    pvpq = np.r_[pv, pq]
    a_pos = np.full(n_bus, -1, dtype=np.int64)
    a_pos[pvpq] = np.arange(len(pvpq))
    m_pos = np.full(n_bus, -1, dtype=np.int64)
    m_pos[pq] = len(pvpq) + np.arange(len(pq))

    # Whatever constant power the case holds besides our elements (e.g. wards); zero here
    # because the build ran with our elements at zero.
    sbus_other = -(ppci["bus"][:, PD] + 1j * ppci["bus"][:, QD]) / base_mva

    return _Model(
        ybus=sp.csr_matrix(ppci["Ybus"]),
        yf=sp.csr_matrix(ppci["Yf"]),
        yt=sp.csr_matrix(ppci["Yt"]),
        base_mva=base_mva,
        ref=ref,
        pvpq=pvpq,
        pq=pq,
        v0=np.asarray(ppci["V"], dtype=complex).copy(),
        sbus_other=sbus_other,
        bus_idx=bus_idx,
        elem_idx=elem_idx,
        line_row=line_row,
        line_k=line_k,
        trafo_row=trafo_row,
        trafo_k=trafo_k,
        a_pos=a_pos,
        m_pos=m_pos,
    )


def _model_for(dn: DistributionNetwork, taps: np.ndarray) -> _Model | None:
    cache = dn.solver_cache
    if "fast" not in cache:
        cache["fast"] = _fast_path_supported(dn.net)
        if not cache["fast"]:
            log.info("%s: fast power flow unsupported, using pandapower runpp", dn.code)
    if not cache["fast"]:
        return None
    models = cache.setdefault("models", {})
    key = tuple(np.round(taps, 6).tolist())
    if key not in models:
        models[key] = _build_model(dn, taps)
    return models[key]


def _jacobian_pattern(model: _Model) -> tuple[np.ndarray, ...]:
    """Index arrays that map Ybus entries and bus diagonals onto Jacobian entries.

    Computed once per model so that each Newton step fills numbers into a fixed pattern
    instead of slicing sparse matrices (which dominated the run time).
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
    """Polar Newton-Raphson Jacobian d[P(pvpq), Q(pq)] / d[Va(pvpq), Vm(pq)] in pu.

    Same formulas as pypower's dSbus_dV: dS/dVa = j diag(V) conj(diag(I) - Y diag(V)),
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


def _mismatch(model: _Model, v: np.ndarray, sbus: np.ndarray) -> np.ndarray:
    mis = v * np.conj(model.ybus @ v) - sbus
    return np.r_[mis[model.pvpq].real, mis[model.pq].imag]


def _newton(
    model: _Model, sbus: np.ndarray, v_start: np.ndarray | None = None
) -> tuple[np.ndarray, bool, int]:
    """Plain polar Newton-Raphson, by default from the no-load solution (deterministic start)."""
    v = (model.v0 if v_start is None or v_start.shape != model.v0.shape else v_start).copy()
    va, vm = np.angle(v), np.abs(v)
    npvpq = len(model.pvpq)
    f = _mismatch(model, v, sbus)
    for it in range(NR_MAX_IT + 1):
        err = np.max(np.abs(f)) if f.size else 0.0
        if not np.isfinite(err):
            return v, False, it
        if err < NR_TOL:
            return v, True, it
        if it == NR_MAX_IT:
            break
        dx = spla.spsolve(jacobian(model, v), -f)
        if not np.all(np.isfinite(dx)):
            return v, False, it
        va[model.pvpq] += dx[:npvpq]
        vm[model.pq] += dx[npvpq:]
        if np.any(vm[model.pq] < 0.2) or np.any(vm[model.pq] > 3.0):
            return v, False, it  # diverging: voltages no physical network can have
        v = vm * np.exp(1j * va)
        f = _mismatch(model, v, sbus)
    return v, False, NR_MAX_IT


def _run_fast(
    dn: DistributionNetwork,
    model: _Model,
    injections: Injections,
    limits: Limits,
    v_start: np.ndarray | None = None,
) -> PowerFlowDetail:
    net = dn.net
    n_bus = len(model.v0)
    sbus = model.sbus_other + _element_sbus(model, injections, n_bus)
    try:
        v, ok, _ = _newton(model, sbus, v_start)
        if not ok and v_start is not None:
            v, ok, _ = _newton(model, sbus)  # a bad warm start must not fail a solvable case
    except Exception as exc:  # singular Jacobian and the like
        log.debug("%s: Newton-Raphson failed: %s", dn.code, exc)
        ok = False
    if not ok:
        log.debug("%s: power flow did not converge", dn.code)
        return _failed_detail(net)

    vm_case = np.abs(v)
    vm = np.where(model.bus_idx >= 0, vm_case[np.maximum(model.bus_idx, 0)], np.nan)

    i_f = np.abs(model.yf @ v)
    i_t = np.abs(model.yt @ v)

    def loading(rows: np.ndarray, k: np.ndarray) -> np.ndarray:
        ok_rows = rows >= 0
        r = np.maximum(rows, 0)
        ld = np.maximum(i_f[r] * k[:, 0], i_t[r] * k[:, 1])
        return np.where(ok_rows, ld, np.nan)

    line_ld = loading(model.line_row, model.line_k)
    trafo_ld = loading(model.trafo_row, model.trafo_k)
    s_ref = v[model.ref] * np.conj(model.ybus[model.ref] @ v) - sbus[model.ref]
    s_ext = complex(np.sum(s_ref)) * model.base_mva
    result = summarise(net, vm, line_ld, trafo_ld, s_ext.real, s_ext.imag, limits)
    return PowerFlowDetail(result, vm, line_ld, trafo_ld, _State(model, v, sbus))


def element_case_bus(detail: PowerFlowDetail, table: str, positions: np.ndarray) -> np.ndarray:
    """Solver bus of elements (by table position); -1 if disconnected or no fast model."""
    if detail.state is None:
        return np.full(len(positions), -1, dtype=np.int64)
    return detail.state.model.elem_idx[table][np.asarray(positions, dtype=np.int64)]


def injection_sensitivities(
    detail: PowerFlowDetail, constraints: list[tuple[str, int]]
) -> np.ndarray | None:
    """d(constraint value) / d(active injection in MW) at every solver bus.

    ``constraints`` are ``("vm", bus position)``, ``("line", line position)`` or
    ``("trafo", trafo position)``; values are |V| in pu and loading in percent (at the branch
    end that carries the larger loading). One adjoint solve J^T lambda = dg/dx per constraint,
    all with a single LU factorisation, gives the row of the whole network at once. Returns
    an array ``[n_constraints, n_solver_buses]``, or None on the pandapower fallback path.
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
        rows, ks = (
            (model.line_row, model.line_k) if kind == "line" else (model.trafo_row, model.trafo_k)
        )
        row = rows[pos]
        if row < 0:
            continue
        i_f = model.yf[row] @ v
        i_t = model.yt[row] @ v
        use_from = abs(i_f[0]) * ks[pos, 0] >= abs(i_t[0]) * ks[pos, 1]
        y_row = (model.yf if use_from else model.yt)[row].tocoo()
        current = (i_f if use_from else i_t)[0]
        k = ks[pos, 0] if use_from else ks[pos, 1]
        if abs(current) == 0:
            continue
        cols, y = y_row.col, y_row.data
        d_va = 1j * y * v[cols]
        d_vm = y * vnorm[cols]
        scale = k / abs(current)
        a, m = model.a_pos[cols], model.m_pos[cols]
        np.add.at(grad[:, j], a[a >= 0], scale * np.real(np.conj(current) * d_va[a >= 0]))
        np.add.at(grad[:, j], m[m >= 0], scale * np.real(np.conj(current) * d_vm[m >= 0]))
    lam = spla.splu(jacobian(model, v)).solve(grad, trans="T")
    n_bus = len(v)
    out = np.zeros((len(constraints), n_bus))
    has_p = model.a_pos >= 0
    out[:, has_p] = lam[model.a_pos[has_p], :].T / model.base_mva
    return out


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
    ``warm_start`` starts Newton-Raphson from an earlier solution of the same network, which
    saves an iteration or two when validation moves the set-points a little.
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
    v_start = state.v if state is not None and state.model is model else None
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
