"""Bid validation by a linearised (sensitivity-based) OPF checked by AC power flow.

The practical form of "single-phase AC OPF" validation (Givisiez et al., PSCC 2020, Sec. III):
linearise voltages and branch loadings around the operating point with sensitivities from the
Newton-Raphson Jacobian, solve a linear program for the largest validated volume (or the fairest
split, :mod:`.fairness`), check the result with an AC power flow, and repeat with the
constraints the check found violated, re-linearised at the new point (successive linear
programming with constraint generation).

Why each piece:

* **Screening.** Of thousands of buses and branches only a few can bind. One AC power flow of the
  unchecked full activation shows which constraints the bids push towards or past their limits;
  only those (plus any near their limit at the forecast point) get sensitivities, each one
  adjoint solve ``J^T lambda = dg/dx`` with the factorised Jacobian. The AC check adds any
  constraint the screen missed, so screening only costs rounds, never safety.
* **Cuts kept for loadings, replaced for voltages.** Branch current magnitude is a convex
  function of the injections to first order (|linear map|), so a linearisation at any point is an
  outer approximation (Kelley's cutting planes, J. E. Kelley, "The cutting-plane method for
  solving convex programs", SIAM J. 1960): keeping all of them stops the LP from oscillating
  when a flow reverses, which a single linearisation misses (see the domain notes); they are
  taken at the baseline and at the full activation from the start. Voltages are nearly linear
  in active injections: each voltage row keeps its latest gradient, re-anchored at the exact
  value of every new point.
* **Only what failed is re-linearised.** Adjoint solves cost per constraint, so a new point
  refreshes only the constraints the AC check found violated or the LP found binding (they
  decide the next optimum); the rest keep their rows. Together with the zone spread this cut
  linear_opf from about 5 s to about 1 s per period on the 10k-bus grid.
* **Factorisations reused.** After the faster triangular solves (:mod:`.powerflow`), the LU
  factorisation of the Jacobian (about 10 ms on the 10k-bus grid) was the largest cost of a
  linearisation. The Jacobian changes little while voltages move by hundredths of a pu, so a
  direction keeps its last factorisation while no voltage moved more than :data:`REUSE_TOL`
  from it; the constraint gradients are still taken at the new point. The rows stay
  first-order models checked by the AC power flow, so this can cost a round, never safety
  (on the 10k grid: 3 factorisations instead of 4-5 per direction, one AC power flow fewer,
  validated volume within 0.02 %).
* **Screening spread over feeders.** Voltage (and loading) violations come in clusters along
  one feeder, whose constraints have nearly the same sensitivities: the worst 40 of one
  cluster buy one LP row's worth of information and leave the next feeder to the next round.
  Screening and the AC check's additions therefore take the worst constraint of every feeder
  (zone: buses joined by lines, transformers separate zones) before a second one of any.
* **Margins that grow** each round keep the next LP point a little inside the limits so that
  second-order errors do not push it out again.
* **Safety.** Only an AC-verified point is validated. If the LP is infeasible, a power flow fails
  at every step back, or no AC-feasible point is found in ``max_rounds`` checks, the direction
  validates nothing and says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import highspy
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from market_sim.grid.constraints import (
    MIN_MW,
    BidLayout,
    Caps,
    DirectionOutcome,
    cap_of,
    check,
    constraint_name,
    values,
    violations,
)
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail
from market_sim.grid.sensitivities import injection_sensitivities
from market_sim.types import Injections, Limits

log = logging.getLogger(__name__)

#: AC power flows (checks) per direction before giving up.
MAX_ROUNDS = 10
#: A constraint is screened in when it comes this close to its limit (pu / percent points).
SCREEN_MARGIN = {"vmax": 0.01, "vmin": 0.01, "line": 10.0, "trafo": 10.0}
#: At most this many screened constraints per kind (the worst ones; the AC check adds others).
MAX_SCREEN = 40
#: At most this many violated constraints per kind added by one AC check.
MAX_ADD = 20
#: Aim this far inside each limit, times the round number (pu / percent points).
MARGIN = {"vmax": 1e-4, "vmin": 1e-4, "line": 0.05, "trafo": 0.05}
#: Re-linearisations at an AC-verified point (each one more AC check) while they add more
#: than POLISH_GAIN x offered volume.
MAX_POLISH = 2
POLISH_GAIN = 1e-3
#: Freezing stages of the equitable (max-min) LP before the final volume stage.
MAX_FAIR_STAGES = 5
#: A row counts as binding when its slack is below this (in the row's unit).
BINDING_TOL = 1e-6
#: Sensitivities at a point whose voltages are within this (pu) of the last factorised one
#: reuse that factorisation (see "Factorisations reused" above).
REUSE_TOL = 0.05

Key = tuple[str, int]


@dataclass
class _Cut:
    a: np.ndarray  # per-bid coefficient (row of the LP)
    rhs: float  # a @ x <= rhs
    key: Key


def _highs() -> highspy.Highs:
    """A quiet HiGHS instance without presolve.

    The LPs are small in rows (hundreds) but dense in thousands of bid columns; presolve
    finds nothing to remove there and took three quarters of the solve time on the 10k grid.
    """
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("presolve", "off")
    return h


def solve_lp(
    h: highspy.Highs, a: np.ndarray, rhs: np.ndarray, offered: np.ndarray, fairness: str
) -> tuple[np.ndarray | None, int]:
    """max sum(x) (or lexicographic max-min share, then volume) s.t. a x <= rhs, 0 <= x <= offered.

    Returns (x or None if infeasible, number of LP solves). Dense ``a`` is passed as a
    column-wise sparse matrix with exact zeros dropped.
    """
    n, m = len(offered), len(rhs)
    equitable = fairness == "equitable" and n > 0
    ncol = n + (1 if equitable else 0)
    rows_a = a if a.size else np.zeros((0, n))
    lower_rows = [np.full(m, -highspy.kHighsInf)]
    upper_rows = [rhs]
    mats = [np.hstack([rows_a, np.zeros((m, 1))]) if equitable else rows_a]
    if equitable:
        # x_i - offered_i * t >= 0 for every bid with an offer.
        pos = offered > 0
        fair = np.zeros((int(pos.sum()), ncol))
        fair[np.arange(fair.shape[0]), np.flatnonzero(pos)] = 1.0
        fair[:, n] = -offered[pos]
        mats.append(fair)
        lower_rows.append(np.zeros(fair.shape[0]))
        upper_rows.append(np.full(fair.shape[0], highspy.kHighsInf))
    mat = np.vstack(mats)
    upper = np.r_[offered, 1.0] if equitable else offered.astype(float)
    cost = np.r_[np.zeros(n), -1.0] if equitable else -np.ones(n)
    # Row-wise straight from the dense rows: no transposed copy of a [rows x bids] matrix; one
    # mask serves indices, counts and values (boolean selection is row-major, like nonzero).
    # Passed as arrays, not through HighsLp's attributes: those copy element by element and
    # took half the time of an LP on the 10k-bus grid.
    nz = mat != 0
    start = np.r_[0, np.cumsum(nz.sum(axis=1))].astype(np.int32)
    h.clearModel()
    h.passModel(
        ncol,
        mat.shape[0],
        int(start[-1]),
        int(highspy.MatrixFormat.kRowwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        cost,
        np.zeros(ncol),
        upper,
        np.concatenate(lower_rows),
        np.concatenate(upper_rows),
        start,
        np.nonzero(nz)[1].astype(np.int32),
        mat[nz],
        np.zeros(ncol, dtype=np.int32),  # all continuous; the binding reads ncol entries
    )
    h.run()
    solves = 1
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None, solves
    if equitable:
        # Progressive filling: freeze the bids whose fairness row has a dual (the bottleneck
        # at the current common share t), then raise the share of the others; finally
        # maximise volume with every share as a lower bound.
        fair_rows = m + np.arange(int(pos.sum()))
        fair_bids = np.flatnonzero(pos)
        free = np.ones(len(fair_bids), dtype=bool)
        for _ in range(MAX_FAIR_STAGES):
            sol = h.getSolution()
            t = float(sol.col_value[n])
            duals = np.abs(np.asarray(sol.row_dual, dtype=float)[fair_rows])
            stuck = free & (duals > 1e-9)
            if not stuck.any() or t >= 1.0 - 1e-9:
                break
            for k in np.flatnonzero(stuck):
                i = int(fair_bids[k])
                h.changeColBounds(i, max(0.0, t * offered[i] - 1e-7), offered[i])
                h.changeRowBounds(int(fair_rows[k]), -highspy.kHighsInf, highspy.kHighsInf)
            free &= ~stuck
            if not free.any():
                break
            h.changeColBounds(n, t, 1.0)
            h.run()
            solves += 1
            if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                return None, solves
        t = float(h.getSolution().col_value[n])
        for k in np.flatnonzero(free):
            i = int(fair_bids[k])
            h.changeColBounds(i, max(0.0, t * offered[i] - 1e-7), offered[i])
        h.changeColBounds(n, 0.0, 1.0)
        h.changeColsCost(ncol, np.arange(ncol, dtype=np.int32), np.r_[-np.ones(n), 0.0])
        h.run()
        solves += 1
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None, solves
    x = np.asarray(h.getSolution().col_value[:n], dtype=float)
    return np.clip(x, 0.0, offered), solves


def _zones(dn: DistributionNetwork) -> dict[str, np.ndarray]:
    """Zone of every constraint: buses joined by in-service lines and closed switches.

    Transformers separate zones, so on a MV-LV grid every LV feeder network is its own zone;
    a line belongs to the zone of its buses, every transformer is a zone of its own. Cached
    per net (zones depend only on the topology).
    """
    cache = dn.solver_cache
    if "linear_opf_zones" not in cache:
        net = dn.net
        n = len(net.bus)
        idx = net.bus.index
        line = net.line[net.line["in_service"].to_numpy(dtype=bool)]
        sw = net.switch
        bb = sw[(sw["et"] == "b") & sw["closed"].astype(bool)]
        a = np.r_[idx.get_indexer(line["from_bus"]), idx.get_indexer(bb["bus"])]
        b = np.r_[idx.get_indexer(line["to_bus"]), idx.get_indexer(bb["element"])]
        ok = (a >= 0) & (b >= 0)
        graph = sp.coo_matrix((np.ones(int(ok.sum())), (a[ok], b[ok])), shape=(n, n))
        n_zones, bus_zone = connected_components(graph, directed=False)
        line_zone = bus_zone[np.maximum(idx.get_indexer(net.line["from_bus"]), 0)]
        cache["linear_opf_zones"] = {
            "vmax": bus_zone,
            "vmin": bus_zone,
            "line": line_zone,
            "trafo": n_zones + np.arange(len(net.trafo)),
        }
    return cache["linear_opf_zones"]


def _spread(pos: np.ndarray, badness: np.ndarray, zone: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` of ``pos``: the worst of every zone first, then the second worst, ...

    Ties are broken by position, so the choice is deterministic.
    """
    if len(pos) == 0:
        return pos
    order = np.lexsort((pos, -badness))  # worst first
    pos, z = pos[order], zone[pos[order]]
    zone_order = np.lexsort((np.arange(len(z)), z))  # stable group by zone, worst first within
    rank = np.empty(len(z), dtype=np.int64)
    starts = np.r_[True, z[zone_order][1:] != z[zone_order][:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(z)), 0))
    rank[zone_order] = np.arange(len(z)) - group_start
    pick = np.lexsort((np.arange(len(z)), rank))[:limit]  # by rank, then by badness
    return pos[np.sort(pick)]


def _screen(dn: DistributionNetwork, caps: Caps, points: list[PowerFlowDetail]) -> list[Key]:
    """Constraints near or past their limit at any of ``points`` (spread over zones, capped)."""
    zones = _zones(dn)
    keys: list[Key] = []
    for kind in ("vmax", "vmin", "line", "trafo"):
        cap = cap_of(caps, kind)
        worst = np.full(len(cap), -np.inf)
        for d in points:
            if d.result.converged:
                worst = np.fmax(worst, values(d, kind) - cap)
        worst = np.nan_to_num(worst, nan=-np.inf)
        near = np.flatnonzero(worst > -SCREEN_MARGIN[kind])
        near = _spread(near, worst[near], zones[kind], MAX_SCREEN)
        keys += [(kind, int(p)) for p in near]
    return keys


def _linearise(
    d: PowerFlowDetail,
    keys: list[Key],
    layout: BidLayout,
    x_at: np.ndarray,
    caps: Caps,
    margin_scale: float,
    reuse: dict | None = None,
) -> list[_Cut]:
    """Rows a x <= rhs of ``keys`` linearised at the power flow ``d`` (activation ``x_at``).

    ``reuse`` holds the direction's last Jacobian factorisation (see :data:`REUSE_TOL`).
    """
    if not keys:
        return []
    bus = layout.case_bus(d)
    constraints = [("vm" if k in ("vmax", "vmin") else k, p) for k, p in keys]
    sens = injection_sensitivities(d, constraints, bus, reuse, REUSE_TOL)
    if sens is None:
        raise RuntimeError("no sensitivities: network not supported by the fast power flow")
    per_bid = sens * layout.inj_sign
    cuts = []
    for r, (kind, pos) in enumerate(keys):
        a = per_bid[r] * (-1.0 if kind == "vmin" else 1.0)
        g = float(values(d, kind)[pos])
        cap = float(cap_of(caps, kind)[pos])
        rhs = cap - MARGIN[kind] * margin_scale - g + float(a @ x_at)
        cuts.append(_Cut(a, rhs, (kind, pos)))
    return cuts


def _anchor(
    d: PowerFlowDetail, key: Key, a: np.ndarray, x_at: np.ndarray, caps: Caps, margin_scale: float
) -> _Cut:
    """Row ``a x <= rhs`` through the value of ``key`` at ``d`` (activation ``x_at``).

    ``a`` may come from an earlier point: voltages are nearly linear in active injections, so
    the first-order model stays good while the exact value at ``d`` removes the drift.
    """
    kind, pos = key
    g = float(values(d, kind)[pos])
    cap = float(cap_of(caps, kind)[pos])
    return _Cut(a, cap - MARGIN[kind] * margin_scale - g + float(a @ x_at), key)


def validate_direction(
    dn: DistributionNetwork,
    baseline: Injections,
    base: PowerFlowDetail,
    bids: pd.DataFrame,
    caps: Caps,
    limits: Limits,
    fairness: str = "max_volume",
    max_rounds: int = MAX_ROUNDS,
) -> DirectionOutcome:
    """Validate the bids of one direction (all rows of ``bids`` share it)."""
    layout = BidLayout.of(dn, bids)
    offered = layout.offered
    n = len(offered)
    if base.state is None:
        return DirectionOutcome.rejected(n, "linear_opf needs the fast power-flow model", 0)
    full = check(dn, layout, baseline, offered, limits, warm=base)
    ac_it = 1
    if full.result.converged and not violations(dn, full, caps):
        return DirectionOutcome(offered.copy(), ["ok"] * n, True, ac_it)

    h = _highs()
    keys = _screen(dn, caps, [base, full])
    zones = _zones(dn)
    loading_cuts: list[_Cut] = []  # kept from every linearisation point (outer approximation)
    reuse: dict = {}  # this direction's last Jacobian factorisation, never shared with others
    if full.result.converged:
        # Kelley cuts at the full activation too: a loading linearised only at the baseline
        # misses a flow the bids reverse (|I| first falls, then rises), and the first LP then
        # accepts everything, which costs a whole round to find out.
        loading = [k for k in keys if k[0] in ("line", "trafo")]
        loading_cuts += _linearise(full, loading, layout, offered, caps, 1.0, reuse)
    grads: dict[Key, np.ndarray] = {}  # latest voltage gradient (per bid) of each voltage key
    refresh: set[Key] = set(keys)  # keys to linearise afresh at the next point
    point, x_point = base, np.zeros(n)
    lp_solves, failures, polish = 0, 0, 0
    # Largest AC-verified activation so far, its binding constraints and each bid's culprit.
    best: tuple[np.ndarray, list[str], list[str]] | None = None
    binding: list[str] = []
    while ac_it < max_rounds + 1:
        scale = failures + 1
        fresh = [k for k in keys if k in refresh]
        cuts = _linearise(point, fresh, layout, x_point, caps, scale, reuse)
        loading_cuts += [c for c in cuts if c.key[0] in ("line", "trafo")]
        grads.update((c.key, c.a) for c in cuts if c.key[0] in ("vmax", "vmin"))
        # Voltages: the latest gradient of every key, anchored at the current point (its
        # value there is exact; the gradient is refreshed when the key is violated or binds).
        v_keys = [k for k in keys if k[0] in ("vmax", "vmin")]
        rows = [_anchor(point, k, grads[k], x_point, caps, scale) for k in v_keys] + loading_cuts
        a = np.array([c.a for c in rows]).reshape(len(rows), n)
        # x = 0 (the baseline) is AC-feasible by construction of the caps; a cut that excludes
        # it is a linearisation artefact, so relax it to pass through the baseline.
        rhs = np.maximum(np.array([c.rhs for c in rows]), 0.0)
        x, solves = solve_lp(h, a, rhs, offered, fairness)
        lp_solves += solves
        if x is None:
            if best is not None:
                break
            out = DirectionOutcome.rejected(n, "linear program infeasible", ac_it)
            out.lp_solves = lp_solves
            return out
        x[x < MIN_MW] = 0.0
        slack = rhs - a @ x if len(rows) else np.zeros(0)
        tight = np.flatnonzero(slack <= BINDING_TOL * np.maximum(1.0, np.abs(rhs)))
        binding, binding_keys, row_names = [], [], []
        for r in tight:
            key = rows[r].key
            name = constraint_name(dn.net, key[0], key[1], _raw_cap(caps, key))
            row_names.append(name)
            if name not in binding:
                binding.append(name)
                binding_keys.append(key)
        d = check(dn, layout, baseline, x, limits, warm=point)
        ac_it += 1
        while not d.result.converged and ac_it < max_rounds:
            x = x_point + 0.5 * (x - x_point)  # step back towards the last converged point
            d = check(dn, layout, baseline, x, limits, warm=point)
            ac_it += 1
        if not d.result.converged:
            break
        viol = violations(dn, d, caps)
        # Re-linearise at the new point what the LP got wrong (violated) or what decides its
        # optimum (binding); every other row keeps its gradient, a solve per key saved.
        refresh = set(binding_keys)
        if not viol:
            gain = x.sum() - (best[0].sum() if best is not None else 0.0)
            if gain > 0:
                best = (x, binding, _culprits(a, tight, row_names, n))
            # Polish: re-linearise at the verified point, where the model is accurate, while
            # that still adds volume (at most MAX_POLISH times).
            polish += 1
            if polish > MAX_POLISH or gain < POLISH_GAIN * offered.sum():
                break
        else:
            if best is not None:
                break  # a polishing step overshot: keep the verified point
            failures += 1
            known = set(keys)
            refresh |= {(v.kind, v.pos) for v in viol if (v.kind, v.pos) in known}
            for kind in ("vmax", "vmin", "line", "trafo"):
                new = [v for v in viol if v.kind == kind and (v.kind, v.pos) not in known]
                pos = np.array([v.pos for v in new], dtype=np.int64)
                over = np.array([v.overshoot for v in new], dtype=float)
                added = [(kind, int(p)) for p in _spread(pos, over, zones[kind], MAX_ADD)]
                keys += added
                refresh |= set(added)
        point, x_point = d, x
    if best is not None:
        x, binding, culprit = best
        reasons = [
            "ok" if xi >= oi - MIN_MW else f"cut: {c}"
            for xi, oi, c in zip(x, offered, culprit, strict=True)
        ]
        return DirectionOutcome(x, reasons, True, ac_it, binding, "", lp_solves)
    log.warning("%s: linear_opf found no AC-feasible point in %d power flows", dn.code, ac_it)
    out = DirectionOutcome.rejected(
        n, f"no AC-feasible point in {ac_it} power flows", ac_it, binding
    )
    out.lp_solves = lp_solves
    return out


def _culprits(a: np.ndarray, tight: np.ndarray, names: list[str], n: int) -> list[str]:
    """Per bid, the binding row that its activation tightens most (largest coefficient).

    The reason of a cut bid names one constraint, as the other methods do, rather than every
    binding one: with dozens binding on the 10k-bus grid the joined list made each reason
    thousands of characters long, and turning 13,000 of them into the result table's string
    column cost about 0.2 s per period. The full list stays in the outcome's ``binding``.
    """
    if len(tight) == 0:
        return ["linear model"] * n
    pick = np.argmax(a[tight], axis=0)  # first of equals: deterministic
    return [names[k] for k in pick]


def _raw_cap(caps: Caps, key: Key) -> float:
    kind, pos = key
    return float((caps.vmin if kind == "vmin" else getattr(caps, kind))[pos])
