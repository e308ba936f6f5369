"""Bid validation by a linearised (sensitivity-based) OPF checked by AC power flow.

The practical form of "single-phase AC OPF" validation (Givisiez et al., PSCC 2020, Sec. III):
linearise voltages and branch loadings around the operating point with sensitivities from the
Newton-Raphson Jacobian, solve a linear program for the largest validated volume (or the fairest
split, :mod:`.fairness`), check the result with an AC power flow, and repeat with the
constraints the check found violated, re-linearised at the new point (successive linear
programming with constraint generation). The loop, the screening and the rows are the shared
mechanism of :mod:`.linearised` (settings :data:`~.linearised.VALIDATION`); what is this
module's own is the LP (max volume or fairness) and how its rows are kept between points.

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
* **Factorisations reused.** After the faster triangular solves (:mod:`.adjoint`), the LU
  factorisation of the Jacobian (about 10 ms on the 10k-bus grid) was the largest cost of a
  linearisation. The Jacobian changes little while voltages move by hundredths of a pu, so a
  direction keeps its last factorisation while no voltage moved more than ``reuse_tol``
  (:data:`~.linearised.VALIDATION`) from it; the constraint gradients are still taken at the
  new point. The rows stay first-order models checked by the AC power flow, so this can cost
  a round, never safety (on the 10k grid: 3 factorisations instead of 4-5 per direction, one
  AC power flow fewer, validated volume within 0.02 %).
* **Screening spread over feeders.** Voltage (and loading) violations come in clusters along
  one feeder, whose constraints have nearly the same sensitivities: the worst 40 of one
  cluster buy one LP row's worth of information and leave the next feeder to the next round.
  Screening and the AC check's additions therefore take the worst constraint of every feeder
  (zone: buses joined by lines, transformers separate zones) before a second one of any
  (:func:`~.linearised.spread`).
* **Margins that grow** each round keep the next LP point a little inside the limits so that
  second-order errors do not push it out again.
* **Safety.** Only an AC-verified point is validated. If the LP is infeasible, a power flow fails
  at every step back, or no AC-feasible point is found in ``max_rounds`` checks, the direction
  validates nothing and says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import highspy
import numpy as np
import pandas as pd

from market_sim import kernels
from market_sim.grid.constraints import (
    MIN_MW,
    BidLayout,
    Caps,
    DirectionOutcome,
    Violation,
    constraint_name,
)
from market_sim.grid.linearised import (
    VALIDATION,
    Checked,
    Key,
    Vertex,
    ac_check,
    bounds,
    box_check,
    box_vertices,
    constraint_generation,
    rows,
    screen,
    violated_keys,
    worst_case,
    worst_vertex,
)
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail
from market_sim.types import Injections, Limits

log = logging.getLogger(__name__)

#: Freezing stages of the equitable (max-min) LP before the final volume stage.
MAX_FAIR_STAGES = 5
#: A row counts as binding when its slack is below this (in the row's unit).
BINDING_TOL = 1e-6


@dataclass
class _Cut:
    a: np.ndarray  # per-bid coefficient (row of the LP)
    rhs: float  # a @ x <= rhs
    key: Key


def quiet_highs() -> highspy.Highs:
    """A quiet HiGHS instance without presolve.

    The LPs are small in rows (hundreds) but dense in thousands of bid columns; presolve
    finds nothing to remove there and took three quarters of the solve time on the 10k grid.
    """
    return kernels.one_thread_highs(presolve="off")


def network_highs(dn: DistributionNetwork) -> highspy.Highs:
    """The :func:`quiet_highs` instance kept with a network, made once.

    The TSO solves two small LPs per DSO and period to tell what its rows validate, and a new
    instance cost more than loading one of them. Each LP is loaded anew (:func:`_pass_lp`
    clears the model first), so no solve starts from another's model or basis.
    """
    h = dn.solver_cache.get("quiet_highs")
    if h is None:
        h = dn.solver_cache["quiet_highs"] = quiet_highs()
    return h


def solve_lp(
    h: highspy.Highs, a: np.ndarray, rhs: np.ndarray, offered: np.ndarray, fairness: str
) -> tuple[np.ndarray | None, int]:
    """max sum(x) (or lexicographic max-min share, then volume) s.t. a x <= rhs, 0 <= x <= offered.

    Returns (x or None if infeasible, number of LP solves). Dense ``a`` is passed as a
    column-wise sparse matrix with exact zeros dropped.
    """
    n = len(offered)
    equitable = fairness == "equitable" and n > 0
    _pass_lp(h, a, rhs, offered, equitable)
    with kernels.timed("solves"):
        h.run()
    solves = 1
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None, solves
    if equitable:
        more, ok = _progressive_filling(h, len(rhs), offered)
        solves += more
        if not ok:
            return None, solves
    x = np.asarray(h.getSolution().col_value[:n], dtype=float)
    return np.clip(x, 0.0, offered), solves


def _pass_lp(
    h: highspy.Highs, a: np.ndarray, rhs: np.ndarray, offered: np.ndarray, equitable: bool
) -> None:
    """Load the LP into ``h``: rows ``a x <= rhs`` and, when equitable, a common share ``t``
    (the last column) with ``x_i - offered_i t >= 0`` for every bid with an offer."""
    n = len(offered)
    mat, row_lower, row_upper = _rows(a if a.size else np.zeros((0, n)), rhs, offered, equitable)
    ncol = mat.shape[1]
    upper = np.append(offered, 1.0) if equitable else offered.astype(float)
    cost = np.append(np.zeros(n), -1.0) if equitable else -np.ones(n)
    # Column-wise, the form HiGHS keeps its matrix in: given rows, passModel transposes them
    # itself, which took 30 of the 72 us (CPU) of loading a TSO's validation LP (45 x 113,
    # 5k entries) and 40 % at [400 x 13k]. Read through the transposed view (no copy of a
    # [rows x bids] matrix); one mask serves indices, counts and values (boolean selection
    # runs in the view's order: column by column, rows ascending, as HiGHS's own transposition
    # orders them). The indices are the row numbers selected by it, a third of the cost of
    # np.nonzero's arrays. Passed as arrays, not through HighsLp's attributes: those copy
    # element by element and took half the time of an LP on the 10k-bus grid.
    by_col = mat.T
    nz = by_col != 0
    start = np.zeros(ncol + 1, dtype=np.int32)
    np.cumsum(nz.sum(axis=1), out=start[1:])
    row = np.broadcast_to(np.arange(mat.shape[0], dtype=np.int32), by_col.shape)
    h.clearModel()
    h.passModel(
        ncol,
        mat.shape[0],
        int(start[-1]),
        int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        cost,
        np.zeros(ncol),
        upper,
        row_lower,
        row_upper,
        start,
        row[nz],
        by_col[nz],
        np.zeros(ncol, dtype=np.int32),  # all continuous; the binding reads ncol entries
    )


def _rows(
    a: np.ndarray, rhs: np.ndarray, offered: np.ndarray, equitable: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dense rows of :func:`_pass_lp` and their lower and upper bounds: ``a`` itself
    where there is no share column (read only: no stacked copy), else ``a`` and the fairness
    rows written into one matrix with the share's column (one allocation, not the blocks of
    ``hstack`` and ``vstack`` copied again)."""
    m = len(rhs)
    if not equitable:
        return a, np.full(m, -highspy.kHighsInf), rhs
    n = len(offered)
    bids = np.flatnonzero(offered > 0)
    k = len(bids)
    mat = np.zeros((m + k, n + 1))
    mat[:m, :n] = a
    mat[m + np.arange(k), bids] = 1.0
    mat[m:, n] = -offered[bids]
    lower = np.concatenate([np.full(m, -highspy.kHighsInf), np.zeros(k)])
    return mat, lower, np.concatenate([rhs, np.full(k, highspy.kHighsInf)])


def _progressive_filling(h: highspy.Highs, m: int, offered: np.ndarray) -> tuple[int, bool]:
    """Max-min shares by progressive filling, on the LP :func:`_pass_lp` loaded and solved.

    Freeze the bids whose fairness row has a dual (the bottleneck at the current common share
    t), then raise the share of the others; finally maximise volume with every share as a
    lower bound. Returns (LP solves, whether every solve was optimal).
    """
    n = len(offered)
    ncol = n + 1
    pos = offered > 0
    fair_rows = m + np.arange(int(pos.sum()))
    fair_bids = np.flatnonzero(pos)
    free = np.ones(len(fair_bids), dtype=bool)
    solves = 0
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
        with kernels.timed("solves"):
            h.run()
        solves += 1
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return solves, False
    t = float(h.getSolution().col_value[n])
    for k in np.flatnonzero(free):
        i = int(fair_bids[k])
        h.changeColBounds(i, max(0.0, t * offered[i] - 1e-7), offered[i])
    h.changeColBounds(n, 0.0, 1.0)
    h.changeColsCost(ncol, np.arange(ncol, dtype=np.int32), np.r_[-np.ones(n), 0.0])
    with kernels.timed("solves"):
        h.run()
    solves += 1
    return solves, h.getModelStatus() == highspy.HighsModelStatus.kOptimal


class _Validation:
    """One direction's successive LP (the :class:`~.linearised.Problem` of linear_opf).

    Rows: every voltage key's latest gradient re-anchored at the current point, and every
    loading cut from every linearisation point (see "Cuts kept for loadings" above). Only the
    keys in ``refresh`` are linearised afresh at a new point.
    """

    def __init__(
        self,
        dn: DistributionNetwork,
        layout: BidLayout,
        baseline: Injections,
        points: list[PowerFlowDetail],
        caps: Caps,
        limits: Limits,
        fairness: str,
    ) -> None:
        """``points``: the baseline, the full activation, and any vertex already seen failing."""
        self.dn, self.layout, self.baseline = dn, layout, baseline
        self.caps, self.limits, self.fairness = caps, limits, fairness
        self.h = quiet_highs()
        self.base, full = points[0], points[1]
        self.keys = screen(dn, caps, points, VALIDATION)
        self.reuse: dict = {}  # this direction's last Jacobian factorisation, never shared
        self.loading_cuts: list[_Cut] = []  # kept from every linearisation point
        if full.converged:
            # Kelley cuts at the full activation too: a loading linearised only at the baseline
            # misses a flow the bids reverse (|I| first falls, then rises), and the first LP
            # then accepts everything, which costs a whole round to find out.
            loading = [k for k in self.keys if k[0] in ("line", "trafo")]
            self.loading_cuts += self._linearise(full, loading, layout.offered, 1.0)
        self.grads: dict[Key, np.ndarray] = {}  # latest voltage gradient (per bid) of each key
        self.refresh: set[Key] = set(self.keys)  # keys to linearise afresh at the next point
        self.point, self.x_point = self.base, np.zeros(len(layout.offered))
        self.lp_solves = self.vertex_flows = 0
        # The last LP's binding constraints (names, their keys) and each bid's culprit.
        self.binding: list[str] = []
        self.binding_keys: list[Key] = []
        self.culprits: list[str] = []

    def _linearise(
        self, d: PowerFlowDetail, keys: list[Key], x_at: np.ndarray, scale: float
    ) -> list[_Cut]:
        """Rows of ``keys`` linearised at ``d`` (activation ``x_at``)."""
        if not keys:
            return []
        a, b = rows(d, keys, self.layout, self.caps, VALIDATION, scale, x_at, self.reuse)
        return [_Cut(a[r], float(b[r]), key) for r, key in enumerate(keys)]

    def solve(self, margin_scale: float) -> np.ndarray | None:
        n = len(self.layout.offered)
        fresh = [k for k in self.keys if k in self.refresh]
        cuts = self._linearise(self.point, fresh, self.x_point, margin_scale)
        self.loading_cuts += [c for c in cuts if c.key[0] in ("line", "trafo")]
        self.grads.update((c.key, c.a) for c in cuts if c.key[0] in ("vmax", "vmin"))
        # Voltages: the latest gradient of every key, anchored at the current point (its
        # value there is exact; the gradient is refreshed when the key is violated or binds).
        v_keys = [k for k in self.keys if k[0] in ("vmax", "vmin")]
        if v_keys:
            grads = np.array([self.grads[k] for k in v_keys])
            b = bounds(self.point, v_keys, grads, self.x_point, self.caps, VALIDATION, margin_scale)
            anchored = [_Cut(grads[r], float(b[r]), k) for r, k in enumerate(v_keys)]
        else:
            anchored = []
        cut_rows = anchored + self.loading_cuts
        a = np.array([c.a for c in cut_rows]).reshape(len(cut_rows), n)
        # x = 0 (the baseline) is AC-feasible by construction of the caps; a cut that excludes
        # it is a linearisation artefact, so relax it to pass through the baseline.
        rhs = np.maximum(np.array([c.rhs for c in cut_rows]), 0.0)
        # Every row over the box [0, x]: any part of the validated set stays within it.
        a = worst_case(a)
        x, solves = solve_lp(self.h, a, rhs, self.layout.offered, self.fairness)
        self.lp_solves += solves
        if x is None:
            return None
        x[x < MIN_MW] = 0.0
        slack = rhs - a @ x if len(cut_rows) else np.zeros(0)
        tight = np.flatnonzero(slack <= BINDING_TOL * np.maximum(1.0, np.abs(rhs)))
        self.binding, self.binding_keys, row_names = [], [], []
        for r in tight:
            key = cut_rows[r].key
            name = constraint_name(self.dn.net, key[0], key[1], _raw_cap(self.caps, key))
            row_names.append(name)
            if name not in self.binding:
                self.binding.append(name)
                self.binding_keys.append(key)
        self.culprits = _culprits(a, tight, row_names, n)
        return x

    def check(self, x: np.ndarray, spare_flows: int) -> Checked:
        """AC check of the full set and of the critical vertices of its near-binding rows.

        A full set whose power flow fails steps back towards the last converged point. The
        record is the point to learn at: the full set, or the vertex that failed worst.
        """
        d, viol = self._ac(x)
        flows = 1
        while viol is None and flows <= spare_flows:
            x = self.x_point + 0.5 * (x - self.x_point)
            d, viol = self._ac(x)
            flows += 1
        if viol is None:
            return Checked(x, False, False, flows=flows)
        point = Vertex(x, d, viol)
        if not viol:
            vertices = box_vertices(self.dn, self.base, d, self.layout, x, self.caps)[1:]
            checked = box_check(
                self.dn, self.layout, self.baseline, self.limits, self.caps, vertices, d
            )
            self.vertex_flows += len(checked)  # not against the rounds: they check one point
            point = worst_vertex([point, *checked])
        if point.violations is None:
            return Checked(x, False, False, flows=flows)
        record = (point, self.binding, self.culprits)
        return Checked(x, True, point.ok, float(x.sum()), flows, record)

    def _ac(self, x: np.ndarray) -> tuple[PowerFlowDetail, list[Violation] | None]:
        inj = self.layout.injections(self.baseline, x)
        return ac_check(self.dn, inj, self.limits, self.caps, warm=self.point)

    def learn(self, at: Checked) -> bool:
        """Re-linearise at the new point what the LP got wrong (violated) or what decides its
        optimum (binding); every other row keeps its gradient, a solve per key saved."""
        point, _, _ = at.record
        self.refresh = set(self.binding_keys)
        if point.violations:
            again, new = violated_keys(self.dn, point.violations, set(self.keys), VALIDATION)
            self.keys += new
            self.refresh |= set(again) | set(new)
        self.point, self.x_point = point.detail, point.x
        return True


def validate_direction(
    dn: DistributionNetwork,
    baseline: Injections,
    base: PowerFlowDetail,
    bids: pd.DataFrame,
    caps: Caps,
    limits: Limits,
    fairness: str = "max_volume",
    max_rounds: int = VALIDATION.max_rounds,
    layout: BidLayout | None = None,
) -> DirectionOutcome:
    """Validate the bids of one direction (all rows of ``bids`` share it; ``layout``:
    ``BidLayout.of(dn, bids)`` if the caller has it, see :mod:`.validation`)."""
    layout = layout or BidLayout.of(dn, bids)
    offered = layout.offered
    n = len(offered)
    if base.state is None:
        return DirectionOutcome.rejected(n, "linear_opf needs the fast power-flow model", 0)
    full, viol = ac_check(dn, layout.injections(baseline, offered), limits, caps, warm=base)
    if viol is not None and not viol:
        vertices = box_vertices(dn, base, full, layout, offered, caps)[1:]
        checked = box_check(dn, layout, baseline, limits, caps, vertices, full)
        if all(v.ok for v in checked):
            return DirectionOutcome(offered.copy(), ["ok"] * n, True, 1 + len(checked))
    else:
        checked = []
    seen = [v.detail for v in checked if v.violations]  # vertices that failed: screen them too
    problem = _Validation(dn, layout, baseline, [base, full, *seen], caps, limits, fairness)
    settings = replace(VALIDATION, max_rounds=max_rounds)
    # Nothing validated (x = 0, every bid harms a row at its limit) is a verified result too.
    floor = -MIN_MW
    search = constraint_generation(problem, settings, floor, gain_unit=float(offered.sum()))
    ac_it = 1 + len(checked) + search.checks + problem.vertex_flows
    if search.best is not None:
        x, (_, binding, culprit) = search.best.x, search.best.record
        reasons = [
            "ok" if xi >= oi - MIN_MW else f"cut: {c}"
            for xi, oi, c in zip(x, offered, culprit, strict=True)
        ]
        return DirectionOutcome(x, reasons, True, ac_it, binding, "", problem.lp_solves)
    if search.ended == "infeasible":
        out = DirectionOutcome.rejected(n, "linear program infeasible", ac_it)
    else:
        log.warning("%s: linear_opf found no AC-feasible point in %d power flows", dn.code, ac_it)
        why = f"no AC-feasible point in {ac_it} power flows"
        out = DirectionOutcome.rejected(n, why, ac_it, problem.binding)
    out.lp_solves = problem.lp_solves
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
