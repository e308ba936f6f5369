"""Rule-based iterative power-flow validation of the bids of one direction.

1. activate all bids at their currently validated quantity and run an AC power flow;
2. if every monitored quantity is within its limit, check the critical vertices of the box
   [0, x] the same way (:func:`~.linearised.box_vertices`: any part of a validated set may be
   activated); if they pass too, stop: that quantity is validated;
3. otherwise, for every violated constraint (of the full set, or of the worst vertex) compute
   the sensitivity of the constrained quantity to each bid (adjoint of the Newton-Raphson
   Jacobian, one solve per constraint), and cut the harmful bids activated there: the needed
   reduction (overshoot plus a margin that grows with the iteration count) is distributed in
   proportion to sensitivity x quantity (``max_volume``: the
   most effective bids are cut most) or as one common share of every harmful bid
   (``equitable``); bids that do not harm the constraint are not cut. Every harmful bid that
   matters is cut by at least ``MIN_CUT_FRACTION`` so that the loop terminates; then go to 1.

A non-converging power flow during the loop is treated by bisection towards the last
converged activation; a direction that reaches no feasible point within its budget of power
flows is rejected as a whole. One of the methods :mod:`.validation` dispatches to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.grid.constraints import (
    MIN_MW,
    BidLayout,
    Caps,
    DirectionOutcome,
    Violation,
    check,
    violations,
)
from market_sim.grid.linearised import SENSITIVITY_KIND, box_check, box_vertices, worst_vertex
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail
from market_sim.grid.sensitivities import injection_sensitivities
from market_sim.types import Injections, Limits

#: Every cut of a relevant harmful bid removes at least this share of its quantity.
MIN_CUT_FRACTION = 0.05
#: Extra reduction beyond the linear estimate (grows by the same amount every iteration).
CUT_MARGIN = 0.02
#: Absolute aim inside the limit: pu for voltage, percent for loading.
ABS_MARGIN = {"vmax": 2e-4, "vmin": 2e-4, "line": 0.1, "trafo": 0.1}
#: No single round removes more than this share of a bid: far from the limit the linear
#: model overstates the cut needed (the loop re-linearises closer to the limit instead).
MAX_CUT_FRACTION = 0.9

# --------------------------------------------------------------------------------------------
# Rule-based iterative power flow


def _distribute(sens: np.ndarray, x: np.ndarray, need: float, equal_share: bool) -> np.ndarray:
    """Cuts c (0 <= c <= x) with sum(sens*c) = need.

    ``equal_share=False``: proportional to sens*x (water filling); ``True``: the same share of
    every harmful bid (c = beta * x).
    """
    cut = np.zeros_like(x)
    free = (sens > 0) & (x > 0)
    if equal_share:
        total = float(np.sum(sens[free] * x[free]))
        if total > 0:
            cut[free] = min(1.0, need / total) * x[free]
        return cut
    remaining = need
    for _ in range(len(x) + 1):
        if remaining <= 0 or not free.any():
            break
        beta = remaining / np.sum(sens[free] ** 2 * x[free])
        trial = beta * sens * x
        capped = free & (trial >= x)
        if not capped.any():
            cut[free] = trial[free]
            break
        cut[capped] = x[capped]
        remaining -= float(np.sum(sens[capped] * x[capped]))
        free &= ~capped
    return cut


def _bid_sensitivities(d: PowerFlowDetail, viol: list[Violation], layout: BidLayout) -> np.ndarray:
    """[n_violations, n_bids] increase of each violated quantity per MW of each bid.

    Positive means the bid makes the violation worse. Without sensitivities (pandapower
    fallback path) every bid is treated as equally harmful.
    """
    constraints = [(SENSITIVITY_KIND[v.kind], v.pos) for v in viol]
    # Only the bids' columns (0 for a bid without a solver bus): the same numbers as those
    # columns of the whole network's rows.
    sens = injection_sensitivities(d, constraints, layout.case_bus(d))
    if sens is None:
        return np.ones((len(viol), len(layout.offered)))
    s = sens * layout.inj_sign
    flip = np.array([-1.0 if v.kind == "vmin" else 1.0 for v in viol])
    return s * flip[:, None]


def _cuts(
    viol: list[Violation],
    sens: np.ndarray,
    x: np.ndarray,
    rounds: int,
    explained_only: bool,
    equal_share: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bid cut (MW) and the index of the violation that demanded the largest cut.

    A violation counts as *explained* when the harmful bids account, to first order, for at
    least half of its overshoot; unexplained ones come from far-off nonlinear operating points
    and their sensitivities would cut innocent bids. Every violation's cut is one row of a
    matrix (only the water filling of :func:`_distribute` runs per row): elementwise the
    numbers of one violation at a time, and a bid's largest cut and the first violation
    that demands it are those of a running maximum over the violations in order.
    """
    harms = np.where(sens > 0, sens * x, 0.0)  # row k: what each bid adds to violation k
    totals = harms.sum(axis=1)  # per row as harms[k].sum(): a contiguous row each
    overshoot = np.array([v.overshoot for v in viol], dtype=float)
    skip = totals <= 0
    if explained_only:
        skip |= totals < 0.5 * overshoot
    rows = np.flatnonzero(~skip)
    if not len(rows):
        return np.zeros_like(x), np.full(len(x), -1, dtype=np.int64)
    margin = np.array([ABS_MARGIN[viol[k].kind] for k in rows.tolist()])
    need = overshoot[rows] * (1.0 + CUT_MARGIN * rounds) + margin * (1 + rounds)
    c = np.array(
        [
            _distribute(sens[k], x, n, equal_share)
            for k, n in zip(rows.tolist(), need.tolist(), strict=True)
        ]
    )
    harm = harms[rows]
    if equal_share:
        relevant = harm > 0
        ratio = np.divide(c, x, out=np.full(c.shape, -np.inf), where=relevant)
        share = np.maximum(ratio.max(axis=1, keepdims=True), MIN_CUT_FRACTION)
        c = np.where(relevant, share * x, 0.0)
    else:
        relevant = harm >= 0.01 * harm.max(axis=1, keepdims=True)
    least, most = MIN_CUT_FRACTION * x, np.where(x > 10 * MIN_MW, MAX_CUT_FRACTION * x, x)
    c = np.minimum(np.where(relevant, np.maximum(c, least), c), most)
    cut = np.maximum(np.zeros_like(x), c.max(axis=0))
    cut_by = np.where(cut > 0, rows[np.argmax(c, axis=0)], -1)
    return cut, cut_by


def _cut_round(
    viol: list[Violation], sens: np.ndarray, x: np.ndarray, rounds: int, equal_share: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The cuts of one round: of the explained violations, else of all, else a back-off.

    When the linear model explains none of the violations (far from the operating point,
    e.g. absurd bids), every harmful bid is cut, and if none is harmful, every bid is halved.
    """
    cut, cut_by = _cuts(viol, sens, x, rounds, True, equal_share)
    if not cut.any():
        cut, cut_by = _cuts(viol, sens, x, rounds, False, equal_share)
    if not cut.any():
        cut, cut_by = 0.5 * x, np.zeros(len(x), dtype=np.int64)
    return cut, cut_by


def validate_direction(
    dn: DistributionNetwork,
    baseline: Injections,
    base: PowerFlowDetail,
    bids: pd.DataFrame,
    caps: Caps,
    limits: Limits,
    fairness: str = "max_volume",
    max_iter: int = 30,
    layout: BidLayout | None = None,
) -> DirectionOutcome:
    """Iterative power-flow validation of the bids of one direction (see the module).

    ``layout``: ``BidLayout.of(dn, bids)`` if the caller has it (see :mod:`.validation`).
    """
    layout = layout or BidLayout.of(dn, bids)
    offered = layout.offered
    equal_share = fairness == "equitable"
    x = offered.copy()
    x_conv = np.zeros_like(x)  # last activation whose power flow converged
    reasons = ["ok"] * len(x)
    binding: list[str] = []
    rounds = flows = 0  # cut rounds so far (the margin grows with them), power flows run
    last = base  # warm start of the next Newton-Raphson
    for _ in range(max_iter):
        d = check(dn, layout, baseline, x, limits, warm=last)
        flows += 1
        if not d.converged:
            # Bisection towards the last activation that converged (the baseline at worst).
            x = x_conv + 0.5 * (x - x_conv)
            for i in np.flatnonzero(x < offered - MIN_MW):
                reasons[i] = "cut: power flow did not converge"
            continue
        x_conv = x.copy()
        last = d
        at, point, viol = x, d, violations(dn, d, caps)
        if not viol:
            # The full set passes: so must every part of it (the box [0, x], step 2).
            checked = box_check(
                dn,
                layout,
                baseline,
                limits,
                caps,
                box_vertices(dn, base, d, layout, x, caps)[1:],
                d,
            )
            flows += len(checked)
            worst = worst_vertex(checked) if checked else None
            if worst is None or worst.ok:
                return DirectionOutcome(x, reasons, True, flows, binding)
            if worst.violations is None:
                x = x - 0.5 * worst.x  # halve the vertex whose power flow failed
                continue
            at, point, viol = worst.x, worst.detail, worst.violations
        sens = _bid_sensitivities(point, viol, layout)
        cut, cut_by = _cut_round(viol, sens, at, rounds, equal_share)
        rounds += 1
        _note_cuts(viol, cut, cut_by, reasons, binding)
        x = np.maximum(x - cut, 0.0)
        x[x < MIN_MW] = 0.0
    return DirectionOutcome.rejected(
        len(x), f"no feasible activation in {flows} power flows", flows, binding
    )


def _note_cuts(
    viol: list[Violation],
    cut: np.ndarray,
    cut_by: np.ndarray,
    reasons: list[str],
    binding: list[str],
) -> None:
    """Name, in place, the constraint behind every cut bid and add it to the binding ones
    (each violation's reason is formatted once, however many bids it cut)."""
    cut_bids = np.flatnonzero(cut > 0)
    for k in np.unique(cut_by[cut_bids]).tolist():
        if viol[k].name not in binding:
            binding.append(viol[k].name)
    labels = [f"cut: {v.name}" for v in viol]
    for i, k in zip(cut_bids.tolist(), np.maximum(cut_by[cut_bids], 0).tolist(), strict=True):
        reasons[i] = labels[k]
