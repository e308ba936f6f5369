"""lightsim2grid's native grid model of a distribution network: built, checked, solved.

A call to ``pandapower.runpp`` costs about 30 ms on a SimBench MV network and 110 ms on the
10,458-bus MV-LV one, mostly pandas bookkeeping around the solver. Repeated power flows
therefore run on lightsim2grid's native grid model (C++ Newton-Raphson with KLU), built once
per tap setting from the solver net of :mod:`.lightsim_conversion` and checked against
``runpp`` at no load when it is built; each period only sends the changed set-points
(vectorised). Results match ``runpp`` to about 1e-10 pu (the tests check it).

lightsim2grid reports a diverged Newton-Raphson (a singular Jacobian included) by returning
an empty voltage vector, and raises ``RuntimeError`` (its C++ exceptions) for a grid it cannot
build or solve; those two are what counts as "not converged" or "not supported" here,
anything else is a bug and propagates.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandapower as pp
import scipy.sparse as sp

from market_sim import kernels
from market_sim.grid.flow_summary import Flows
from market_sim.grid.lightsim_conversion import OpenEnd, solver_net, unsupported_reason
from market_sim.grid.network import DistributionNetwork
from market_sim.types import ELEMENT_TABLES, Injections

try:
    from lightsim2grid.network import init_from_pandapower
except ImportError:  # unsupported_reason() then sends every network to runpp
    init_from_pandapower = None

log = logging.getLogger(__name__)

#: Newton-Raphson convergence threshold on the largest power mismatch (pu of net.sn_mva).
NR_TOL = 1e-9
NR_MAX_IT = 20
#: Largest no-load voltage difference (pu) to pandapower for which lightsim2grid is trusted.
MODEL_CHECK_TOL = 1e-8
#: Solutions from the no-load start a :class:`Model` keeps, by their set-points: a period
#: solves some points again a few power flows later (the state a DSO measures and its
#: baseline at delivery, a dispatch's AC check and its delivery).
KEPT_SOLUTIONS = 8


@dataclass
class Model:
    """A lightsim2grid grid for one tap setting, with the maps between it and ``net``.

    Three bus labellings meet here: ``net.bus`` positions, lightsim2grid's grid-model buses
    (one per bus of the fused solver net, i.e. per ``net.bus`` position whose bus-bus switches
    were merged into it) and its solver buses (the energised ones, in solver order). Sensitivity
    arrays are in solver buses; :func:`~.sensitivities.element_case_bus` maps elements onto
    them. ``jac_pattern`` and ``branch_y`` are filled on first use by :mod:`.jacobian`.
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
    set_points: SetPoints  # where each table's p and q lie in ``sent``
    sent: np.ndarray  # float32 set-points last sent to ``grid``, laid out by ``set_points``
    line_rating: np.ndarray  # kA behind 100 % loading
    trafo_rating: np.ndarray  # MVA behind 100 % loading, over sqrt(3)
    trafo_vn: np.ndarray  # [n_trafo, 2] rated kV at hv / lv side
    bus_kv: np.ndarray  # solver bus -> nominal kV
    a_pos: np.ndarray  # solver bus -> index of its angle in the NR state, -1 if none
    m_pos: np.ndarray  # solver bus -> index of its magnitude in the NR state, -1 if none
    bus_grid: np.ndarray  # net.bus position -> grid-model bus (any, where not energised)
    bus_on: np.ndarray | None  # net.bus positions energised (bus_idx >= 0); None: all are
    line_on: np.ndarray | None  # lines / trafos in service in the grid (fixed once it is
    trafo_on: np.ndarray | None  # built); None: all are
    updates: dict[str, Any]  # set-point key ("load_p", ...) -> the grid's vectorised update
    jac_pattern: Any = None  # jacobian._Pattern
    branch_y: dict[str, tuple] = field(default_factory=dict)
    #: the last :data:`KEPT_SOLUTIONS` solutions from ``v0``, by their set-points' bytes
    solutions: dict[bytes, tuple[Flows, State]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class SetPoints:
    """Every set-point a power flow sends, laid out as one array: a block per non-empty
    element table and kind (load p, load q, sgen p, ...), in the order they are sent.

    One array lets a power flow scale, round to float32 and compare all of them with what was
    sent before in a handful of numpy calls instead of a handful per table and kind (most of a
    validation's power flows change one or two blocks; the rest are skipped as before).
    """

    blocks: tuple[tuple[str, str], ...]  # (table, "p" or "q") of each block
    slices: tuple[slice, ...]  # each block's positions
    starts: np.ndarray  # each block's first position (for ``np.logical_or.reduceat``)
    scaling: np.ndarray | None  # pandapower's ``scaling`` per position; None if all are 1

    @classmethod
    def of(cls, net: Any) -> SetPoints:
        """The layout of ``net``'s loads, sgens and storages (their ``scaling``, NaN as 1)."""
        blocks, sizes, scales = [], [], []
        for table in ELEMENT_TABLES:
            df = net[table]
            if not len(df):
                continue
            scale = df["scaling"].to_numpy(dtype=float) if "scaling" in df else np.ones(len(df))
            for kind in ("p", "q"):
                blocks.append((table, kind))
                sizes.append(len(df))
                scales.append(np.nan_to_num(scale, nan=1.0))
        ends = np.cumsum(sizes, dtype=np.int64)
        scaling = np.concatenate(scales) if scales else np.zeros(0)
        return cls(
            tuple(blocks),
            tuple(slice(int(e - n), int(e)) for e, n in zip(ends, sizes, strict=True)),
            ends - np.asarray(sizes, dtype=np.int64),
            None if (scaling == 1.0).all() else scaling,
        )

    @property
    def size(self) -> int:
        """How many set-points there are in all."""
        return self.slices[-1].stop if self.slices else 0

    def scaled(self, injections: Injections) -> np.ndarray:
        """The set-points as lightsim2grid takes them: times ``scaling``, in float32.

        A scaling of 1 changes no bit, so it is skipped where every element has it.
        """
        parts = [
            (injections.p_mw if kind == "p" else injections.q_mvar)[table]
            for table, kind in self.blocks
        ]
        values = np.concatenate(parts, dtype=float) if parts else np.zeros(0)
        if self.scaling is not None:
            values = values * self.scaling
        return values.astype(np.float32)


@dataclass(frozen=True)
class State:
    """A converged solution of a :class:`Model`: what the sensitivities linearise around."""

    model: Model
    v: np.ndarray  # solver labelled


class Unsupported(RuntimeError):
    """lightsim2grid cannot reproduce pandapower on this network."""


# --------------------------------------------------------------------------------------------
# One model per tap setting


def model_for(dn: DistributionNetwork, taps: np.ndarray) -> Model | None:
    """The cached grid of this tap setting; None once the network uses ``runpp`` instead.

    Raises pandapower's ``LoadflowNotConverged`` if the no-load reference does not converge
    (nothing is cached then: a later call tries again).
    """
    cache = dn.solver_cache
    if "runpp_reason" not in cache:
        cache["runpp_reason"] = unsupported_reason(dn.net)
        if cache["runpp_reason"]:
            log.debug("%s: lightsim2grid unsupported (%s), using runpp", dn.code, runpp_reason(dn))
    if runpp_reason(dn):
        return None
    models = cache.setdefault("models", {})
    seen = _seen_taps(cache, models)
    exact = np.asarray(taps, dtype=float).tobytes()
    if exact in seen:
        return seen[exact]
    key = tuple(np.round(taps, 6).tolist())
    if key not in models:
        try:
            models[key] = _build_model(dn, taps)
        except Unsupported as exc:
            log.debug("%s: %s, using pandapower runpp", dn.code, exc)
            cache["runpp_reason"] = str(exc)
            return None
    seen[exact] = models[key]
    return models[key]


def _seen_taps(cache: dict[str, Any], models: dict[tuple, Model]) -> dict[bytes, Model]:
    """The models of the tap settings asked for before, by their exact bytes.

    Every power flow asks for its model, and rounding the taps into :func:`model_for`'s key
    cost more than the rest of the lookup; the taps rarely change, so their bytes find the
    model directly. Kept for this ``models`` dict only: a new one (:func:`forget_models`)
    starts afresh.
    """
    kept = cache.get("models_by_taps")
    if kept is None or kept[0] is not models:
        kept = (models, {})
        cache["models_by_taps"] = kept
    return kept[1]


def forget_models(dn: DistributionNetwork) -> None:
    """Drop the network's lightsim2grid grids; the next power flow builds them afresh.

    A grid that has solved other power flows gives results that differ in the last bits
    (1e-15 MW in a validation) from a fresh one's; the model calls this at every checkpoint
    boundary so that a resumed run equals an uninterrupted one bit for bit.
    """
    dn.solver_cache.pop("models", None)


def runpp_reason(dn: DistributionNetwork) -> str:
    """Why this network's power flows run on ``runpp`` instead of lightsim2grid ("" if not)."""
    return dn.solver_cache.get("runpp_reason", "")


def _build_model(dn: DistributionNetwork, taps: np.ndarray) -> Model:
    """Build the lightsim2grid grid for ``taps`` and check it against pandapower at no load.

    pandapower's ``runpp`` of the same tap setting with every load/sgen/storage at zero is the
    reference (it converges for any scenario); a grid whose no-load voltages differ from it by
    more than :data:`MODEL_CHECK_TOL` means the conversion misses something of this network,
    and the network falls back to ``runpp``. The checked no-load solution is also the
    deterministic start of later power flows.

    The grids rebuilt at every checkpoint boundary (:func:`forget_models`) start from a copy
    of the checked grid as it was before its first power flow (:func:`_renewed`): converting
    the solver net again cost 6-13 ms a quickstart network and boundary, a copy under 1 ms.
    """
    net = dn.net
    cache = dn.solver_cache
    vm_ext = float(net.ext_grid["vm_pu"].iloc[0])
    # A no-load grid depends on the net's parameters, ``taps`` and the slack's set-point only
    # (every set-point is zero): its checked copy and pandapower's reference are kept by them,
    # like the solver net, so that a grid built again is checked without another runpp.
    key = (tuple(np.asarray(taps, dtype=float).tolist()), vm_ext)
    unsolved = cache.setdefault("unsolved_grids", {})
    if key in unsolved:
        renewed = _renewed(*unsolved[key], vm_ext)
        if renewed is not None:
            return renewed
    if "solver_net" not in cache:
        cache["solver_net"] = solver_net(net)
    snet, fused, open_ends = cache["solver_net"]
    references = cache.setdefault("no_load_reference", {})
    if key not in references:
        references[key] = _no_load_reference(net, taps)
    vm_ref = references[key]
    for t in ELEMENT_TABLES:
        snet[t]["p_mw"] = 0.0
        snet[t]["q_mvar"] = 0.0
    snet.trafo["tap_pos"] = taps
    try:
        grid = _no_load_grid(snet, open_ends)
        pristine = grid.copy()
        v0 = _no_load_solution(grid, vm_ext)
    except RuntimeError as exc:  # the converter refuses the net, or its solver fails
        raise Unsupported(f"lightsim2grid conversion failed: {exc}") from exc

    to_grid = np.array(grid.id_ac_solver_to_me(), dtype=np.int64)  # a copy (see _assemble)
    solver_of = np.full(len(v0), -1, dtype=np.int64)
    solver_of[to_grid] = np.arange(len(to_grid))
    bus_idx = np.where(net.bus["in_service"].to_numpy(dtype=bool), solver_of[fused], -1)
    vm = np.where(bus_idx >= 0, np.abs(v0[fused]), np.nan)
    if not np.array_equal(np.isnan(vm), np.isnan(vm_ref)) or (
        np.nanmax(np.abs(vm - vm_ref), initial=0.0) > MODEL_CHECK_TOL
    ):
        raise Unsupported("lightsim2grid's no-load voltages differ from pandapower's")
    model = _assemble(net, grid, v0, to_grid, bus_idx)
    unsolved[key] = (pristine, model)
    return model


def _renewed(pristine: Any, checked: Model, vm_ext: float) -> Model | None:
    """A fresh :class:`Model` of a grid checked before: ``checked`` on a copy of its grid as it
    was before any power flow (``pristine``), solved at no load like a new one.

    lightsim2grid's ``copy`` is a full, independent one, so the copy solves every power flow
    bit for bit as the grid converted anew did (what :func:`forget_models` is for); should
    its no-load solution or solver buses differ from ``checked``'s in any bit all the same,
    None: the grid is then built afresh. What the model derives from the net is shared with
    ``checked`` (never written into); what the grid's solver fills in is new.
    """
    grid = pristine.copy()
    try:
        v0 = _no_load_solution(grid, vm_ext)
    except (RuntimeError, Unsupported):
        return None
    if not (
        np.array_equal(v0, checked.v0)
        and np.array_equal(np.asarray(grid.id_ac_solver_to_me()), checked.to_grid)
    ):
        return None
    return replace(
        checked,
        grid=grid,
        v0=v0,
        sent=np.zeros_like(checked.sent),
        updates=_updates(grid),
        jac_pattern=None,
        branch_y={},
        solutions={},
    )


def _no_load_reference(net: Any, taps: np.ndarray) -> np.ndarray:
    """``runpp`` bus voltages of ``net`` at ``taps`` with every set-point at zero.

    The net's set-points and taps are restored afterwards (its result tables are not).
    """
    saved = {t: net[t][["p_mw", "q_mvar"]].copy() for t in ELEMENT_TABLES if len(net[t])}
    saved_taps = net.trafo["tap_pos"].copy()
    try:
        for t in saved:
            net[t]["p_mw"] = 0.0
            net[t]["q_mvar"] = 0.0
        net.trafo["tap_pos"] = taps
        with kernels.timed("power_flows"):
            pp.runpp(net, numba=False, calculate_voltage_angles=True, init="dc")
        return net.res_bus["vm_pu"].to_numpy(dtype=float)
    finally:
        for t, df in saved.items():
            net[t]["p_mw"] = df["p_mw"].to_numpy()
            net[t]["q_mvar"] = df["q_mvar"].to_numpy()
        net.trafo["tap_pos"] = saved_taps


def _no_load_grid(snet: Any, open_ends: list[OpenEnd]) -> Any:
    """lightsim2grid grid of the solver net (set-points at zero), before any power flow."""
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
    return grid


def _no_load_solution(grid: Any, vm_ext: float) -> np.ndarray:
    """The no-load voltages of a grid of :func:`_no_load_grid`, its first power flows."""
    v_flat = np.full(grid.total_bus(), vm_ext, dtype=complex)
    # A DC power flow first puts the angles of the phase-shifting (150 degree) trafos in.
    v_dc = grid.dc_pf(v_flat.copy(), NR_MAX_IT, NR_TOL)
    start = v_dc if len(v_dc) == len(v_flat) and np.all(np.isfinite(v_dc)) else v_flat
    with kernels.timed("power_flows"):
        v0 = np.array(grid.ac_pf(start.copy(), NR_MAX_IT, NR_TOL))  # a copy (see _assemble)
    if len(v0) == 0:
        raise Unsupported("lightsim2grid finds no no-load solution")
    return v0


def _assemble(
    net: Any, grid: Any, v0: np.ndarray, to_grid: np.ndarray, bus_idx: np.ndarray
) -> Model:
    """The :class:`Model` of a checked grid: state positions, element maps, ratings."""
    # Copies, not views: these arrays live in lightsim2grid's solver, which a new solver
    # (after a diverged power flow, see _solve) frees.
    pv = np.array(grid.get_pv_solver(), dtype=np.int64)
    pq = np.array(grid.get_pq_solver(), dtype=np.int64)
    pvpq = np.r_[pv, pq]
    a_pos = np.full(len(to_grid), -1, dtype=np.int64)
    a_pos[pvpq] = np.arange(len(pvpq))
    m_pos = np.full(len(to_grid), -1, dtype=np.int64)
    m_pos[pq] = len(pvpq) + np.arange(len(pq))
    elem_idx = _element_buses(net, bus_idx)
    set_points = SetPoints.of(net)
    line, trafo = net.line, net.trafo
    return Model(
        grid=grid,
        base_mva=float(net.sn_mva),
        v0=v0,
        to_grid=to_grid,
        ybus=sp.csc_matrix(grid.get_Ybus_solver(), copy=True),
        ref=np.array(grid.get_slack_ids_solver(), dtype=np.int64),
        pvpq=pvpq,
        pq=pq,
        bus_idx=bus_idx,
        elem_idx=elem_idx,
        set_points=set_points,
        sent=np.zeros(set_points.size, dtype=np.float32),
        line_rating=(line["max_i_ka"] * line["df"] * line["parallel"]).to_numpy(dtype=float),
        trafo_rating=(trafo["sn_mva"] * trafo["df"] * trafo["parallel"]).to_numpy(dtype=float)
        / np.sqrt(3),
        trafo_vn=trafo[["vn_hv_kv", "vn_lv_kv"]].to_numpy(dtype=float),
        bus_kv=np.asarray(grid.get_bus_vn_kv(), dtype=float)[to_grid],
        a_pos=a_pos,
        m_pos=m_pos,
        bus_grid=to_grid[np.maximum(bus_idx, 0)],
        bus_on=_unless_all(bus_idx >= 0),
        # The statuses come as Python lists; no power flow changes them.
        line_on=_unless_all(np.asarray(grid.get_lines_status(), dtype=bool)),
        trafo_on=_unless_all(np.asarray(grid.get_trafo_status(), dtype=bool)),
        updates=_updates(grid),
    )


def _updates(grid: Any) -> dict[str, Any]:
    """The grid's vectorised set-point updates by set-point key (see :class:`Model`)."""
    return {
        "load_p": grid.update_loads_p,
        "load_q": grid.update_loads_q,
        "sgen_p": grid.update_sgens_p,
        "storage_p": grid.update_storages_p,
    }


def _unless_all(mask: np.ndarray) -> np.ndarray | None:
    """``mask``, or None when it selects every element (see :func:`_where`)."""
    return None if mask.all() else mask


def _element_buses(net: Any, bus_idx: np.ndarray) -> dict[str, np.ndarray]:
    """Per element table: the solver bus of each element, -1 where it is not connected."""
    elem_idx = {}
    for table in ELEMENT_TABLES:
        df = net[table]
        pos = net.bus.index.get_indexer(df["bus"].to_numpy())
        in_service = df["in_service"].to_numpy(dtype=bool)
        elem_idx[table] = np.where(in_service, bus_idx[pos], -1) if len(df) else pos
    return elem_idx


# --------------------------------------------------------------------------------------------
# One power flow


def run(
    model: Model, injections: Injections, v_start: np.ndarray | None = None
) -> tuple[Flows, State] | None:
    """One lightsim2grid power flow from ``v_start``, by default from the no-load solution.

    The default start is fixed rather than the last solution, so that a run's results do not
    depend on what was solved before in the same process (equal seeds give bitwise equal
    tables); it costs about one Newton iteration. A failed warm start is retried from it.
    The same set-points from the no-load start are solved once: a kept solution
    (:data:`KEPT_SOLUTIONS`; read-only, shared by every caller that asks for it) is returned
    again. None if Newton-Raphson does not converge.
    """
    new = model.set_points.scaled(injections)
    key = new.tobytes() if v_start is None else None
    kept = model.solutions.get(key) if key is not None else None
    if kept is not None:
        return kept
    _send_injections(model, new)
    solved = _solve(model, model.v0 if v_start is None else v_start)
    if solved is None and v_start is not None:
        solved = _solve(model, model.v0)
    if solved is None:
        return None
    v, v_solver = solved
    result = (_flows(model, v), State(model, v_solver))
    if key is not None:
        _keep(model.solutions, key, result)
    return result


def _keep(solutions: dict[bytes, tuple[Flows, State]], key: bytes, result: tuple) -> None:
    """Keep ``result`` read-only under ``key``, dropping the oldest beyond the limit."""
    flows, state = result
    for values in (*vars(flows).values(), state.v):
        if isinstance(values, np.ndarray):
            values.flags.writeable = False
    if len(solutions) >= KEPT_SOLUTIONS:
        del solutions[next(iter(solutions))]
    solutions[key] = result


def _send_injections(model: Model, new: np.ndarray) -> None:
    """Send the set-points (:meth:`SetPoints.scaled`) that changed since the last power flow
    to the grid, vectorised.

    lightsim2grid takes float32 arrays here: the rounding (1e-7 relative) moves voltages by
    about 1e-10 pu, far below the 1e-6 pu the results are compared at. All set-points are
    compared at once (:class:`SetPoints`); each block with a change is sent as before.
    """
    layout = model.set_points
    changed = new != model.sent
    if not changed.any():
        return
    touched = np.logical_or.reduceat(changed, layout.starts).tolist()
    for (table, kind), part, hit in zip(layout.blocks, layout.slices, touched, strict=True):
        if hit:
            _update(model, table, kind, changed[part], new[part])
    model.sent = new


def _update(model: Model, table: str, kind: str, changed: np.ndarray, new: np.ndarray) -> None:
    """Send one table's new ``kind`` set-points (float32) where ``changed`` to the grid."""
    update = model.updates.get(f"{table}_{kind}")
    if update is not None:
        update(changed, new)
        return
    # No vectorised update in lightsim2grid: one element at a time.
    grid = model.grid
    change = grid.change_q_sgen if table == "sgen" else grid.change_q_storage
    for i in np.flatnonzero(changed):
        change(int(i), float(new[i]))


def _solve(model: Model, v_start: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """lightsim2grid Newton-Raphson from ``v_start``: the grid-model and the solver-labelled
    voltages, or None."""
    try:
        with kernels.timed("power_flows"):
            v = np.array(model.grid.ac_pf(v_start.copy(), NR_MAX_IT, NR_TOL))
    except RuntimeError as exc:  # lightsim2grid's own failure (a C++ exception)
        log.debug("lightsim2grid power flow failed: %s", exc)
        v = np.zeros(0, dtype=complex)
    v_solver = v[model.to_grid] if len(v) else v
    if len(v) == 0 or not np.isfinite(v_solver).all():
        # A diverged Newton-Raphson leaves lightsim2grid's solver in a state that fails the
        # next power flow too, whatever its inputs (a validation's failed trial points made
        # the delivery power flow of the same injections fail). A new solver of the same
        # type makes every power flow depend on its own inputs only.
        model.grid.change_solver(model.grid.get_solver_type())
        return None
    return v, v_solver


def _flows(model: Model, v: np.ndarray) -> Flows:
    """Bus voltages and branch loadings (pandapower's definitions) of a converged solution.

    lightsim2grid's result arrays are views of its solver's memory (the next power flow
    overwrites them): those kept as they are get copied, the computed ones are new already.
    """
    grid = model.grid
    at_bus = v[model.bus_grid]
    bus_on, line_on, trafo_on = model.bus_on, model.line_on, model.trafo_on
    vm = _where(bus_on, np.abs(at_bus))
    va = _where(bus_on, np.degrees(np.arctan2(at_bus.imag, at_bus.real)))  # np.angle's
    line_1 = grid.get_line_res1()
    line_ld = np.maximum(line_1[3], grid.get_line_res2()[3])
    line_ld /= model.line_rating
    line_ld *= 100.0
    # pandapower's "current" trafo loading: i_ka * vn_kv * sqrt3 / sn_mva / parallel / df.
    hv = grid.get_trafo_res1()
    i_hv, i_lv = hv[3], grid.get_trafo_res2()[3]
    trafo_ld = np.maximum(i_hv * model.trafo_vn[:, 0], i_lv * model.trafo_vn[:, 1])
    trafo_ld /= model.trafo_rating
    trafo_ld *= 100.0
    p_ext, q_ext, _ = grid.get_gen_res()
    return Flows(
        vm,
        _where(line_on, line_ld),
        _where(trafo_on, trafo_ld),
        np.add.reduce(p_ext),  # ndarray.sum's reduction, without its Python wrapper
        np.add.reduce(q_ext),
        va_degree=va,
        line_p_mw=_where(line_on, np.array(line_1[0], dtype=float)),
        line_q_mvar=_where(line_on, np.array(line_1[1], dtype=float)),
        trafo_p_mw=_where(trafo_on, np.array(hv[0], dtype=float)),
        trafo_q_mvar=_where(trafo_on, np.array(hv[1], dtype=float)),
    )


def _where(on: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    """``np.where(on, values, nan)`` of a new float array ``values``: NaN where not ``on``
    (usually every element is, ``on`` None: then ``values`` itself, without the select)."""
    if on is None:
        return values
    return np.where(on, values, np.nan)
