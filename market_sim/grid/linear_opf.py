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
  when a flow reverses, which a single linearisation misses (see the domain notes). Voltages are
  nearly linear in active injections and are re-linearised at the latest point only.
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
from market_sim.grid.powerflow import PowerFlowDetail, injection_sensitivities
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

Key = tuple[str, int]


@dataclass
class _Cut:
    a: np.ndarray  # per-bid coefficient (row of the LP)
    rhs: float  # a @ x <= rhs
    key: Key


def _highs() -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
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
    lp = highspy.HighsLp()
    lp.num_col_ = ncol
    lp.num_row_ = mat.shape[0]
    lower = np.zeros(ncol)
    upper = np.r_[offered, 1.0] if equitable else offered.copy()
    cost = np.r_[np.zeros(n), -1.0] if equitable else -np.ones(n)
    lp.col_cost_ = cost
    lp.col_lower_ = lower
    lp.col_upper_ = upper
    lp.row_lower_ = np.concatenate(lower_rows)
    lp.row_upper_ = np.concatenate(upper_rows)
    nz = mat != 0
    col_counts = nz.sum(axis=0)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.r_[0, np.cumsum(col_counts)].astype(np.int32)
    rows_idx, cols_idx = np.nonzero(nz.T)  # column-major order
    lp.a_matrix_.index_ = cols_idx.astype(np.int32)
    lp.a_matrix_.value_ = mat.T[rows_idx, cols_idx]
    h.clearModel()
    h.passModel(lp)
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


def _screen(
    caps: Caps, points: list[PowerFlowDetail], viol_keys: set[Key] | None = None
) -> list[Key]:
    """Constraints near or past their limit at any of ``points`` (worst first, capped)."""
    keys: list[Key] = []
    for kind in ("vmax", "vmin", "line", "trafo"):
        cap = cap_of(caps, kind)
        worst = np.full(len(cap), -np.inf)
        for d in points:
            if d.result.converged:
                worst = np.fmax(worst, values(d, kind) - cap)
        with np.errstate(invalid="ignore"):
            near = np.flatnonzero(np.nan_to_num(worst, nan=-np.inf) > -SCREEN_MARGIN[kind])
        near = near[np.argsort(-worst[near])][:MAX_SCREEN]
        keys += [(kind, int(p)) for p in near]
    return keys


def _linearise(
    d: PowerFlowDetail,
    keys: list[Key],
    layout: BidLayout,
    x_at: np.ndarray,
    caps: Caps,
    margin_scale: float,
) -> list[_Cut]:
    """Rows a x <= rhs of ``keys`` linearised at the power flow ``d`` (activation ``x_at``)."""
    if not keys:
        return []
    sens = injection_sensitivities(d, [("vm" if k in ("vmax", "vmin") else k, p) for k, p in keys])
    bus = layout.case_bus(d)
    if sens is None:
        raise RuntimeError("no sensitivities: network not supported by the fast power flow")
    per_bid = np.where(bus >= 0, sens[:, np.maximum(bus, 0)], 0.0) * layout.inj_sign
    cuts = []
    for r, (kind, pos) in enumerate(keys):
        a = per_bid[r] * (-1.0 if kind == "vmin" else 1.0)
        g = float(values(d, kind)[pos])
        cap = float(cap_of(caps, kind)[pos])
        rhs = cap - MARGIN[kind] * margin_scale - g + float(a @ x_at)
        cuts.append(_Cut(a, rhs, (kind, pos)))
    return cuts


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
    keys = _screen(caps, [base, full])
    loading_cuts: list[_Cut] = []  # kept from every linearisation point (outer approximation)
    point, x_point = base, np.zeros(n)
    lp_solves, failures, polish = 0, 0, 0
    best: tuple[np.ndarray, list[str]] | None = None  # largest AC-verified activation so far
    binding: list[str] = []
    while ac_it < max_rounds + 1:
        cuts = _linearise(point, keys, layout, x_point, caps, failures + 1)
        loading_cuts += [c for c in cuts if c.key[0] in ("line", "trafo")]
        rows = [c for c in cuts if c.key[0] in ("vmax", "vmin")] + loading_cuts
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
        binding = []
        for c, s in zip(rows, slack, strict=True):
            if s <= BINDING_TOL * max(1.0, abs(c.rhs)):
                name = constraint_name(dn.net, c.key[0], c.key[1], _raw_cap(caps, c.key))
                if name not in binding:
                    binding.append(name)
        d = check(dn, layout, baseline, x, limits, warm=point)
        ac_it += 1
        while not d.result.converged and ac_it < max_rounds:
            x = x_point + 0.5 * (x - x_point)  # step back towards the last converged point
            d = check(dn, layout, baseline, x, limits, warm=point)
            ac_it += 1
        if not d.result.converged:
            break
        viol = violations(dn, d, caps)
        if not viol:
            gain = x.sum() - (best[0].sum() if best is not None else 0.0)
            if gain > 0:
                best = (x, binding)
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
            for kind in ("vmax", "vmin", "line", "trafo"):
                new = sorted((v for v in viol if v.kind == kind), key=lambda v: -v.overshoot)
                keys += [(v.kind, v.pos) for v in new[:MAX_ADD] if (v.kind, v.pos) not in known]
        point, x_point = d, x
    if best is not None:
        x, binding = best
        reasons = [
            "ok" if xi >= oi - MIN_MW else f"cut: {', '.join(binding) or 'linear model'}"
            for xi, oi in zip(x, offered, strict=True)
        ]
        return DirectionOutcome(x, reasons, True, ac_it, binding, "", lp_solves)
    log.warning("%s: linear_opf found no AC-feasible point in %d power flows", dn.code, ac_it)
    out = DirectionOutcome.rejected(
        n, f"no AC-feasible point in {ac_it} power flows", ac_it, binding
    )
    out.lp_solves = lp_solves
    return out


def _raw_cap(caps: Caps, key: Key) -> float:
    kind, pos = key
    return float((caps.vmin if kind == "vmin" else getattr(caps, kind))[pos])
