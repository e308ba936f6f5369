"""Rule-based iterative power-flow validation of flexibility bids by a DSO.

The DSO answers one question per bid: how many MW of it may be activated without driving the
distribution network out of its limits? Up and down bids are validated separately because a
TSO never activates both directions at once. For each direction:

1. activate all bids at their currently validated quantity and run an AC power flow;
2. if every monitored quantity is within its limit, stop: that quantity is validated;
3. otherwise, for every violated constraint compute the sensitivity of the constrained
   quantity to each bid (adjoint of the Newton-Raphson Jacobian, one solve per constraint),
   and cut the harmful bids: the needed reduction (overshoot plus a margin that grows with the
   iteration count) is distributed in proportion to sensitivity x quantity, so the most
   effective bids are cut most and bids that do not harm the constraint are not cut. Every
   harmful bid that matters is cut by at least ``MIN_CUT_FRACTION`` so that the loop
   terminates; then go to 1.

Pre-existing violations (already present in the baseline, before any bid): the baseline level
becomes the limit of that element, i.e. bids may not make it worse, and bids that would are
cut. The DSO never validates something unsafe: if the baseline power flow fails, everything
is rejected; if a direction does not reach a feasible point within ``max_iter`` power flows,
every bid of that direction is rejected (validated_mw = 0), the other direction keeps its
result, and ``converged`` is False. A non-converging power flow during the loop is treated by
bisection towards the last converged activation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import (
    _UP_SIGN,
    VIOLATION_TOL,
    PowerFlowDetail,
    element_case_bus,
    injection_sensitivities,
    monitored_buses,
    run_power_flow_detailed,
)
from market_sim.types import DIRECTIONS, ELEMENT_TABLES, UP, Injections, Limits, ValidationResult

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
#: Quantities below this are validated as zero (MW); 1 kW is below any metering resolution.
MIN_MW = 1e-3


@dataclass(frozen=True)
class _Caps:
    """Effective limits: the operating limits, relaxed to the baseline level where violated."""

    vmax: np.ndarray
    vmin: np.ndarray
    line: np.ndarray
    trafo: np.ndarray


@dataclass(frozen=True)
class _Violation:
    kind: str  # vmax, vmin, line, trafo
    pos: int  # position in net.bus / net.line / net.trafo
    overshoot: float
    name: str


def _effective_limits(dn: DistributionNetwork, base: PowerFlowDetail, limits: Limits) -> _Caps:
    net = dn.net
    mon = monitored_buses(net)
    vm = np.where(mon, base.vm_pu, np.nan)
    line_on = net.line["in_service"].to_numpy(dtype=bool)
    trafo_on = net.trafo["in_service"].to_numpy(dtype=bool)
    return _Caps(
        vmax=np.fmax(np.where(np.isfinite(vm), limits.vm_max_pu, np.nan), vm),
        vmin=np.fmin(np.where(np.isfinite(vm), limits.vm_min_pu, np.nan), vm),
        line=np.where(
            line_on, np.fmax(limits.max_loading_percent, base.line_loading_percent), np.nan
        ),
        trafo=np.where(
            trafo_on, np.fmax(limits.max_loading_percent, base.trafo_loading_percent), np.nan
        ),
    )


def _violations(dn: DistributionNetwork, d: PowerFlowDetail, caps: _Caps) -> list[_Violation]:
    """Constraints of ``d`` beyond the effective limits (NaN limits are not monitored)."""
    net = dn.net
    out: list[_Violation] = []
    checks = (
        ("vmax", d.vm_pu - caps.vmax, net.bus.index, "bus {} vm>{:.4f}", caps.vmax),
        ("vmin", caps.vmin - d.vm_pu, net.bus.index, "bus {} vm<{:.4f}", caps.vmin),
        (
            "line",
            d.line_loading_percent - caps.line,
            net.line.index,
            "line {} loading>{:.1f}%",
            caps.line,
        ),
        (
            "trafo",
            d.trafo_loading_percent - caps.trafo,
            net.trafo.index,
            "trafo {} loading>{:.1f}%",
            caps.trafo,
        ),
    )
    for kind, over, index, fmt, cap in checks:
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(np.nan_to_num(over, nan=-1.0) > VIOLATION_TOL)
        for pos in bad:
            out.append(
                _Violation(kind, int(pos), float(over[pos]), fmt.format(index[pos], cap[pos]))
            )
    return out


def _within(d: PowerFlowDetail, dn: DistributionNetwork, caps: _Caps) -> bool:
    return d.result.converged and not _violations(dn, d, caps)


def _distribute(sens: np.ndarray, x: np.ndarray, need: float) -> np.ndarray:
    """Cuts c (0 <= c <= x) proportional to sens*x with sum(sens*c) = need (water filling)."""
    cut = np.zeros_like(x)
    free = (sens > 0) & (x > 0)
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


def _bid_sensitivities(
    d: PowerFlowDetail,
    viol: list[_Violation],
    tables: np.ndarray,
    positions: np.ndarray,
    sign: np.ndarray,
) -> np.ndarray:
    """[n_violations, n_bids] increase of each violated quantity per MW of each bid.

    Positive means the bid makes the violation worse. Without sensitivities (pandapower
    fallback path) every bid is treated as equally harmful.
    """
    constraints = [("vm" if v.kind in ("vmax", "vmin") else v.kind, v.pos) for v in viol]
    sens_bus = injection_sensitivities(d, constraints)
    if sens_bus is None:
        return np.ones((len(viol), len(sign)))
    case_bus = np.full(len(sign), -1, dtype=np.int64)
    for table in ELEMENT_TABLES:
        sel = tables == table
        if sel.any():
            case_bus[sel] = element_case_bus(d, table, positions[sel])
    s = np.where(case_bus >= 0, sens_bus[:, np.maximum(case_bus, 0)], 0.0) * sign
    flip = np.array([-1.0 if v.kind == "vmin" else 1.0 for v in viol])
    return s * flip[:, None]


def _cuts(
    viol: list[_Violation], sens: np.ndarray, x: np.ndarray, rounds: int, explained_only: bool
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
        c = _distribute(s, x, need)
        relevant = harm >= 0.01 * harm.max()
        c = np.where(relevant, np.maximum(c, MIN_CUT_FRACTION * x), c)
        c = np.minimum(c, np.where(x > 10 * MIN_MW, MAX_CUT_FRACTION * x, x))
        better = c > cut
        cut_by[better] = k
        cut = np.maximum(cut, c)
    return cut, cut_by


def _validate_direction(
    dn: DistributionNetwork,
    baseline: Injections,
    bids: pd.DataFrame,
    caps: _Caps,
    limits: Limits,
    max_iter: int,
    base: PowerFlowDetail | None = None,
) -> tuple[np.ndarray, list[str], int, bool, list[str]]:
    """Validated quantities, per-bid reasons, power flows run, success, binding names."""
    offered = bids["mw"].to_numpy(dtype=float)
    x = offered.copy()
    x_conv = np.zeros_like(x)  # last activation whose power flow converged
    reasons = ["ok"] * len(x)
    binding: list[str] = []
    sign = np.where(bids["direction"].to_numpy() == UP, 1.0, -1.0)
    tables = bids["element"].to_numpy(dtype=object)
    positions = np.zeros(len(x), dtype=np.int64)
    for table in ELEMENT_TABLES:
        sel = tables == table
        positions[sel] = dn.net[table].index.get_indexer(bids["element_index"].to_numpy()[sel])
    delta_sign = np.array([_UP_SIGN[t] for t in tables]) * sign  # on the table's own value
    rounds = 0  # sensitivity-based cut rounds so far (the margin grows with them)
    last = base  # warm start of the next Newton-Raphson
    for it in range(1, max_iter + 1):
        inj = baseline.copy()
        for table in ELEMENT_TABLES:
            sel = tables == table
            if sel.any():
                np.add.at(inj.p_mw[table], positions[sel], delta_sign[sel] * x[sel])
        d = run_power_flow_detailed(dn, inj, limits, write=False, warm_start=last)
        if not d.result.converged:
            # Bisection towards the last activation that converged (the baseline at worst).
            x = x_conv + 0.5 * (x - x_conv)
            for i in np.flatnonzero(x < offered - MIN_MW):
                reasons[i] = "cut: power flow did not converge"
            continue
        x_conv = x.copy()
        last = d
        viol = _violations(dn, d, caps)
        if not viol:
            return x, reasons, it, True, binding
        sens = _bid_sensitivities(d, viol, tables, positions, sign)
        cut, cut_by = _cuts(viol, sens, x, rounds, explained_only=True)
        if not cut.any():
            # The linear model explains none of the violations (far from the operating point,
            # e.g. absurd bids): fall back to every harmful bid, then to a uniform back-off.
            cut, cut_by = _cuts(viol, sens, x, rounds, explained_only=False)
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
    return np.zeros_like(x), reasons, max_iter, False, binding


def validate_iterative(
    dn: DistributionNetwork,
    baseline: Injections,
    bids: pd.DataFrame,
    limits: Limits,
    max_iter: int = 30,
) -> ValidationResult:
    """Validate a bid book on ``dn`` around ``baseline``; see the module docstring."""
    n = len(bids)
    bid_ids = bids["bid_id"].to_numpy(dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    validated = np.zeros(n)
    reasons = np.array(["ok"] * n, dtype=object)

    def result(iterations: int, converged: bool, binding: list[str], msg: str) -> ValidationResult:
        table = pd.DataFrame(
            {"bid_id": bid_ids, "validated_mw": validated, "reason": reasons.astype(str)}
        )
        return ValidationResult(table, iterations, converged, tuple(binding), msg)

    base = run_power_flow_detailed(dn, baseline, limits, write=False)
    if not base.result.converged:
        reasons[:] = "rejected: baseline power flow did not converge"
        log.warning("%s: baseline power flow did not converge, rejecting all bids", dn.code)
        return result(1, False, [], "baseline power flow did not converge")
    if n == 0:
        return result(1, True, [], "")

    mw = bids["mw"].to_numpy(dtype=float)
    known = np.zeros(n, dtype=bool)
    elements = bids["element"].to_numpy(dtype=object)
    for table in ELEMENT_TABLES:
        sel = elements == table
        if sel.any():
            known[sel] = dn.net[table].index.get_indexer(bids["element_index"][sel]) >= 0
    reasons[~known] = "rejected: unknown element"
    active = known & np.isfinite(mw) & (mw > MIN_MW)

    caps = _effective_limits(dn, base, limits)
    iterations, converged, binding, messages = 1, True, [], []
    for direction in DIRECTIONS:
        sel = active & (bids["direction"].to_numpy() == direction)
        if not sel.any():
            continue
        x, why, n_pf, ok, bind = _validate_direction(
            dn, baseline, bids[sel], caps, limits, max_iter, base
        )
        iterations += n_pf
        binding += [b for b in bind if b not in binding]
        if ok:
            validated[sel] = x
            reasons[sel] = why
        else:
            converged = False
            reasons[sel] = f"rejected: no feasible {direction} activation in {max_iter} power flows"
            messages.append(f"{direction} bids rejected after {max_iter} power flows")
            log.warning("%s: %s", dn.code, messages[-1])
    return result(iterations, converged, binding, "; ".join(messages))
