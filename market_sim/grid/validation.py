"""Validation of flexibility bids by a DSO: one entry point, several methods.

The DSO answers one question per bid: how many MW of it may be activated without driving the
distribution network out of its limits? Up and down bids are validated separately because a
TSO never activates both directions at once. :func:`validate` dispatches by name to

* ``iterative_pf`` (this module): rule-based iterative power flow, cut and re-check;
* ``linear_opf`` (:mod:`.linear_opf`): sensitivity LP with AC verification, the fast path;
* ``ac_opf`` (:mod:`.ac_opf`): pandapower's AC OPF, the slow reference on small networks;

with a fairness policy (:mod:`.fairness`: ``max_volume`` or ``equitable``) and optionally the
DSO's own HV/MV tap changers (:mod:`.oltc`). Every method sees the same effective limits
(:mod:`.constraints`) and reports per period, in :attr:`ValidationResult.info`: volume
offered and validated, binding constraints, AC power flows run, LP solves, compute time and
Jain's index of the accepted shares.

The rule-based iterative method:

1. activate all bids at their currently validated quantity and run an AC power flow;
2. if every monitored quantity is within its limit, stop: that quantity is validated;
3. otherwise, for every violated constraint compute the sensitivity of the constrained
   quantity to each bid (adjoint of the Newton-Raphson Jacobian, one solve per constraint),
   and cut the harmful bids: the needed reduction (overshoot plus a margin that grows with the
   iteration count) is distributed in proportion to sensitivity x quantity (``max_volume``: the
   most effective bids are cut most) or as one common share of every harmful bid
   (``equitable``); bids that do not harm the constraint are not cut. Every harmful bid that
   matters is cut by at least ``MIN_CUT_FRACTION`` so that the loop terminates; then go to 1.

Pre-existing violations (already present in the baseline, before any bid): the baseline level
becomes the limit of that element, i.e. bids may not make it worse, and bids that would are
cut. The DSO never validates something unsafe: if the baseline power flow fails, everything
is rejected; if a direction does not reach a feasible point within its budget of power flows,
every bid of that direction is rejected (validated_mw = 0), the other direction keeps its
result, and ``converged`` is False. A non-converging power flow during the iterative loop is
treated by bisection towards the last converged activation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from market_sim.grid import ac_opf, linear_opf
from market_sim.grid.constraints import (
    MIN_MW,
    BidLayout,
    Caps,
    DirectionOutcome,
    Violation,
    check,
    effective_limits,
    violations,
    within,
)
from market_sim.grid.fairness import check_fairness, jain_index, min_share
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.oltc import tap_candidates
from market_sim.grid.powerflow import (
    PowerFlowDetail,
    injection_sensitivities,
    run_power_flow_detailed,
)
from market_sim.types import DIRECTIONS, ELEMENT_TABLES, Injections, Limits, ValidationResult

log = logging.getLogger(__name__)

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
    constraints = [("vm" if v.kind in ("vmax", "vmin") else v.kind, v.pos) for v in viol]
    sens_bus = injection_sensitivities(d, constraints)
    if sens_bus is None:
        return np.ones((len(viol), len(layout.offered)))
    case_bus = layout.case_bus(d)
    s = np.where(case_bus >= 0, sens_bus[:, np.maximum(case_bus, 0)], 0.0) * layout.inj_sign
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
    and their sensitivities would cut innocent bids.
    """
    cut = np.zeros_like(x)
    cut_by = np.full(len(x), -1, dtype=np.int64)
    for k, v in enumerate(viol):
        s = sens[k]
        harm = np.where(s > 0, s * x, 0.0)
        total = harm.sum()
        if total <= 0 or (explained_only and total < 0.5 * v.overshoot):
            continue
        need = v.overshoot * (1.0 + CUT_MARGIN * rounds) + ABS_MARGIN[v.kind] * (1 + rounds)
        c = _distribute(s, x, need, equal_share)
        relevant = (harm > 0) if equal_share else (harm >= 0.01 * harm.max())
        if equal_share:
            share = max(float(np.max(c[relevant] / x[relevant])), MIN_CUT_FRACTION)
            c = np.where(relevant, share * x, 0.0)
        c = np.where(relevant, np.maximum(c, MIN_CUT_FRACTION * x), c)
        c = np.minimum(c, np.where(x > 10 * MIN_MW, MAX_CUT_FRACTION * x, x))
        better = c > cut
        cut_by[better] = k
        cut = np.maximum(cut, c)
    return cut, cut_by


def _iterative_direction(
    dn: DistributionNetwork,
    baseline: Injections,
    base: PowerFlowDetail,
    bids: pd.DataFrame,
    caps: Caps,
    limits: Limits,
    fairness: str = "max_volume",
    max_iter: int = 30,
) -> DirectionOutcome:
    """Iterative power-flow validation of the bids of one direction."""
    layout = BidLayout.of(dn, bids)
    offered = layout.offered
    equal_share = fairness == "equitable"
    x = offered.copy()
    x_conv = np.zeros_like(x)  # last activation whose power flow converged
    reasons = ["ok"] * len(x)
    binding: list[str] = []
    rounds = 0  # sensitivity-based cut rounds so far (the margin grows with them)
    last = base  # warm start of the next Newton-Raphson
    for it in range(1, max_iter + 1):
        d = check(dn, layout, baseline, x, limits, warm=last)
        if not d.result.converged:
            # Bisection towards the last activation that converged (the baseline at worst).
            x = x_conv + 0.5 * (x - x_conv)
            for i in np.flatnonzero(x < offered - MIN_MW):
                reasons[i] = "cut: power flow did not converge"
            continue
        x_conv = x.copy()
        last = d
        viol = violations(dn, d, caps)
        if not viol:
            return DirectionOutcome(x, reasons, True, it, binding)
        sens = _bid_sensitivities(d, viol, layout)
        cut, cut_by = _cuts(viol, sens, x, rounds, True, equal_share)
        if not cut.any():
            # The linear model explains none of the violations (far from the operating point,
            # e.g. absurd bids): fall back to every harmful bid, then to a uniform back-off.
            cut, cut_by = _cuts(viol, sens, x, rounds, False, equal_share)
        if not cut.any():
            cut, cut_by = 0.5 * x, np.zeros(len(x), dtype=np.int64)
        rounds += 1
        for k in np.unique(cut_by[cut > 0]):
            if viol[k].name not in binding:
                binding.append(viol[k].name)
        x = np.maximum(x - cut, 0.0)
        x[x < MIN_MW] = 0.0
        for i in np.flatnonzero(cut > 0):
            reasons[i] = f"cut: {viol[max(cut_by[i], 0)].name}"
    return DirectionOutcome.rejected(
        len(x), f"no feasible activation in {max_iter} power flows", max_iter, binding
    )


# --------------------------------------------------------------------------------------------
# Registry and the common driver

#: (dn, baseline, base power flow, bids of one direction, caps, limits, fairness, **options)
DirectionValidator = Callable[..., DirectionOutcome]

METHODS: dict[str, DirectionValidator] = {
    "iterative_pf": _iterative_direction,
    "linear_opf": linear_opf.validate_direction,
    "ac_opf": ac_opf.validate_direction,
}


def _method(name: str) -> DirectionValidator:
    if name not in METHODS:
        raise ValueError(f"unknown validation method {name!r}; allowed: {', '.join(METHODS)}")
    return METHODS[name]


def _with_taps(baseline: Injections, taps: np.ndarray) -> Injections:
    out = baseline.copy()
    out.trafo_tap_pos = np.asarray(taps, dtype=float).copy()
    return out


def _validate_at(
    dn: DistributionNetwork,
    baseline: Injections,
    base: PowerFlowDetail,
    bids: pd.DataFrame,
    active: np.ndarray,
    caps: Caps,
    limits: Limits,
    solver: DirectionValidator,
    fairness: str,
    options: dict[str, Any],
) -> dict[str, tuple[np.ndarray, DirectionOutcome]]:
    out = {}
    directions = bids["direction"].to_numpy()
    for direction in DIRECTIONS:
        sel = active & (directions == direction)
        if sel.any():
            res = solver(dn, baseline, base, bids[sel], caps, limits, fairness, **options)
            out[direction] = (sel, res)
    return out


def validate(
    dn: DistributionNetwork,
    baseline: Injections,
    bids: pd.DataFrame,
    limits: Limits,
    method: str = "iterative_pf",
    fairness: str = "max_volume",
    oltc: bool = False,
    **options: Any,
) -> ValidationResult:
    """Validate a bid book on ``dn`` around ``baseline`` with the named method.

    ``method``: a key of :data:`METHODS`; ``fairness``: ``max_volume`` or ``equitable``;
    ``oltc``: let the DSO pick its HV/MV tap positions (:mod:`.oltc`) for the largest total
    validated volume; the chosen taps are in ``trafo_tap_pos``. ``options`` go to the method
    (``max_iter`` for iterative_pf, ``max_rounds`` for linear_opf / ac_opf) except
    ``oltc_reach`` (tap steps tried each side, default 2). Unknown names raise ValueError;
    everything else is reported in the result, never raised.
    """
    solver = _method(method)
    check_fairness(fairness)
    reach = int(options.pop("oltc_reach", 2))
    t0 = time.perf_counter()
    n = len(bids)
    bid_ids = bids["bid_id"].to_numpy(dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    validated = np.zeros(n)
    reasons = np.array(["ok"] * n, dtype=object)
    mw = bids["mw"].to_numpy(dtype=float) if n else np.zeros(0)
    info: dict[str, Any] = {"method": method, "fairness": fairness, "oltc": oltc}

    def result(
        iterations: int,
        converged: bool,
        binding: list[str],
        msg: str,
        taps: np.ndarray | None,
    ) -> ValidationResult:
        table = pd.DataFrame(
            {"bid_id": bid_ids, "validated_mw": validated, "reason": reasons.astype(str)}
        )
        directions = bids["direction"].to_numpy() if n else np.zeros(0, dtype=object)
        per_dir = info.setdefault("directions", {})
        for direction in DIRECTIONS:
            sel = directions == direction
            entry = per_dir.setdefault(direction, {})
            entry.update(
                offered_mw=float(np.nansum(mw[sel])),
                validated_mw=float(validated[sel].sum()),
                jain=jain_index(validated[sel], mw[sel]),
                min_share=min_share(validated[sel], mw[sel]),
            )
        info.update(
            offered_mw=float(np.nansum(mw)),
            validated_mw=float(validated.sum()),
            binding=list(binding),
            ac_iterations=iterations,
            time_s=time.perf_counter() - t0,
        )
        info.setdefault("lp_solves", 0)
        return ValidationResult(table, iterations, converged, tuple(binding), msg, taps, info)

    base = run_power_flow_detailed(dn, baseline, limits, write=False)
    if not base.result.converged:
        reasons[:] = "rejected: baseline power flow did not converge"
        log.debug("%s: baseline power flow did not converge, rejecting all bids", dn.code)
        return result(1, False, [], "baseline power flow did not converge", None)
    taps0 = np.asarray(baseline.trafo_tap_pos, dtype=float)
    if n == 0:
        return result(1, True, [], "", taps0)

    known = np.zeros(n, dtype=bool)
    elements = bids["element"].to_numpy(dtype=object)
    for table in ELEMENT_TABLES:
        sel = elements == table
        if sel.any():
            known[sel] = dn.net[table].index.get_indexer(bids["element_index"][sel]) >= 0
    reasons[~known] = "rejected: unknown element"
    active = known & np.isfinite(mw) & (mw > MIN_MW)

    caps = effective_limits(dn, base, limits)
    candidates = tap_candidates(dn, taps0, reach) if oltc else [taps0]
    best, best_volume, iterations, tried = None, -1.0, 1, []
    for taps in candidates:
        inj, d = baseline, base
        if taps is not taps0:
            inj = _with_taps(baseline, taps)
            d = run_power_flow_detailed(dn, inj, limits, write=False, warm_start=base)
            iterations += 1
            if not within(dn, d, caps):  # the new taps alone must keep the network safe
                tried.append({"taps": taps.tolist(), "validated_mw": None})
                continue
        outcomes = _validate_at(dn, inj, d, bids, active, caps, limits, solver, fairness, options)
        iterations += sum(o.ac_iterations for _, o in outcomes.values())
        info["lp_solves"] = info.get("lp_solves", 0) + sum(
            o.lp_solves for _, o in outcomes.values()
        )
        volume = sum(float(o.x.sum()) for _, o in outcomes.values())
        tried.append({"taps": taps.tolist(), "validated_mw": volume})
        if volume > best_volume + 1e-9:
            best, best_volume = (taps, outcomes), volume
    if oltc:
        info["tap_candidates"] = tried

    taps, outcomes = best
    converged, binding, messages = True, [], []
    per_dir: dict[str, Any] = {}
    for direction, (sel, res) in outcomes.items():
        validated[sel] = res.x
        reasons[sel] = res.reasons
        binding += [b for b in res.binding if b not in binding]
        per_dir[direction] = {
            "converged": res.converged,
            "ac_iterations": res.ac_iterations,
            "lp_solves": res.lp_solves,
            "binding": list(res.binding),
        }
        if not res.converged:
            converged = False
            messages.append(f"{direction} bids rejected: {res.message}")
            log.debug("%s: %s (%s)", dn.code, messages[-1], method)
    info["directions"] = per_dir
    return result(iterations, converged, binding, "; ".join(messages), taps)


def validate_iterative(
    dn: DistributionNetwork,
    baseline: Injections,
    bids: pd.DataFrame,
    limits: Limits,
    max_iter: int = 30,
) -> ValidationResult:
    """Rule-based iterative power-flow validation (``validate(method="iterative_pf")``)."""
    return validate(dn, baseline, bids, limits, method="iterative_pf", max_iter=max_iter)
