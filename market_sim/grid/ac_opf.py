"""Bid validation by pandapower's AC OPF: the reference, slow, for small MV networks.

Every bid becomes a controllable static generator at its bus with active power in
``[0, offered]`` (up) or ``[-offered, 0]`` (down), zero reactive power and a cost of -1 per MW
of activation, so the interior-point AC OPF (PYPOWER/MATPOWER's MIPS, R. D. Zimmerman et al.,
"MATPOWER: Steady-State Operations, Planning and Analysis Tools", IEEE Trans. Power Syst. 2011)
maximises validated volume under the effective voltage band and branch loading limits. All
other devices stay at their baseline set-points; the ext_grid is the free slack.

pandapower's OPF limits branches by apparent power at nominal voltage while pandapower's
loading (and our limits) count current, so the OPF point is checked by an AC power flow and,
where it overshoots, the violated limits are tightened by the overshoot and the OPF re-run
(``max_rounds`` times). A run that does not converge validates nothing (converged=False).
``equitable`` first finds the largest common share of every bid that passes an AC power flow
(bisection), then maximises volume with that share as every bid's lower bound.

Use it to measure how far the fast methods are from the optimum, not inside long simulations:
one ``runopp`` costs about a second on a 100-bus feeder.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings

import numpy as np
import pandapower as pp
import pandas as pd

from market_sim import kernels
from market_sim.grid.constraints import (
    MIN_MW,
    BidLayout,
    Caps,
    DirectionOutcome,
    check,
    violations,
)
from market_sim.grid.injections import write_injections
from market_sim.grid.linearised import Vertex, box_check, box_vertices, worst_vertex
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail
from market_sim.types import Injections, Limits

log = logging.getLogger(__name__)

#: OPF runs per direction (each followed by an AC check) before giving up.
MAX_ROUNDS = 4
#: Bisection steps of the common share for ``equitable``.
SHARE_STEPS = 12
#: Aim inside the limits (pu / percent points) so that the OPF's own tolerance cannot overshoot.
MARGIN_VM = 1e-4
MARGIN_LOADING = 0.05


def _opf_net(dn: DistributionNetwork, baseline: Injections, bids: pd.DataFrame, layout: BidLayout):
    """A copy of the net at the baseline with one controllable sgen per bid (their indices)."""
    tmp = dataclasses.replace(dn, net=copy.deepcopy(dn.net), solver_cache={})
    write_injections(tmp, baseline)
    net = tmp.net
    for table in ("load", "sgen", "storage", "gen"):
        if len(net[table]):
            net[table]["controllable"] = False
    net.ext_grid["controllable"] = True
    for col, val in (("min_p_mw", -1e5), ("max_p_mw", 1e5), ("min_q_mvar", -1e5)):
        net.ext_grid[col] = val
    net.ext_grid["max_q_mvar"] = 1e5
    buses = np.array(
        [dn.net[t]["bus"].iloc[p] for t, p in zip(layout.tables, layout.positions, strict=True)]
    )
    idx = []
    for bus, offer, sign in zip(buses, layout.offered, layout.inj_sign, strict=True):
        lo, hi = (0.0, offer) if sign > 0 else (-offer, 0.0)
        i = pp.create_sgen(
            net, int(bus), p_mw=0.0, q_mvar=0.0, controllable=True,
            min_p_mw=lo, max_p_mw=hi, min_q_mvar=0.0, max_q_mvar=0.0, name="bid",
        )  # fmt: skip
        pp.create_poly_cost(net, i, "sgen", cp1_eur_per_mw=-float(sign))
        idx.append(i)
    for table in ("load", "sgen", "storage", "gen", "ext_grid"):
        if len(net[table]):  # NaN in an object column breaks pandapower's OPF build
            net[table]["controllable"] = net[table]["controllable"].fillna(False).astype(bool)
    return net, np.array(idx, dtype=np.int64)


def _set_limits(net, caps: Caps, tighten: dict[tuple[str, int], float]) -> None:
    # Unmonitored (HV) buses get no voltage limits at all: any limit on the ext_grid bus, even
    # a loose one, makes pandapower 3.5's OPF diverge on SimBench MV networks.
    vmax = np.where(np.isfinite(caps.vmax), caps.vmax - MARGIN_VM, np.nan)
    vmin = np.where(np.isfinite(caps.vmin), caps.vmin + MARGIN_VM, np.nan)
    line = np.where(np.isfinite(caps.line), caps.line - MARGIN_LOADING, 1e4)
    trafo = np.where(np.isfinite(caps.trafo), caps.trafo - MARGIN_LOADING, 1e4)
    for (kind, pos), amount in tighten.items():
        arr = {"vmax": vmax, "vmin": vmin, "line": line, "trafo": trafo}[kind]
        arr[pos] += amount if kind == "vmin" else -amount  # NaN (unmonitored) stays NaN
    net.bus["max_vm_pu"] = vmax
    net.bus["min_vm_pu"] = vmin
    net.line["max_loading_percent"] = line
    net.trafo["max_loading_percent"] = trafo


def _common_share(dn, layout, baseline, base, caps, limits) -> tuple[float, int]:
    """Largest t in [0, 1] with every part of the set of every bid at t * offered AC-feasible
    (bisection; the full set, then the critical vertices of its box, as for any validated
    set), and the power flows run. The full set alone is not enough: where the baseline
    already violates a limit, single bids at the share can worsen it while the whole set
    does not (semiurb, April midday: a subset 6.9e-4 pu over a voltage cap)."""
    lo, hi, runs = 0.0, 1.0, 0
    for _ in range(SHARE_STEPS):
        mid = 0.5 * (lo + hi)
        x = mid * layout.offered
        d = check(dn, layout, baseline, x, limits, warm=base)
        runs += 1
        ok = d.converged and not violations(dn, d, caps)
        if ok:
            worst, flows = _box(dn, layout, baseline, base, d, x, caps, limits)
            runs += flows
            ok = worst.ok
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo, runs


def validate_direction(
    dn: DistributionNetwork,
    baseline: Injections,
    base: PowerFlowDetail,
    bids: pd.DataFrame,
    caps: Caps,
    limits: Limits,
    fairness: str = "max_volume",
    max_rounds: int = MAX_ROUNDS,
    layout: BidLayout | None = None,
) -> DirectionOutcome:
    """Validate the bids of one direction with pandapower's AC OPF (see module docstring;
    ``layout``: ``BidLayout.of(dn, bids)`` if the caller has it, see :mod:`.validation`)."""
    layout = layout or BidLayout.of(dn, bids)
    offered, n = layout.offered, len(layout.offered)
    full = check(dn, layout, baseline, offered, limits, warm=base)
    ac_it = 1
    if full.converged and not violations(dn, full, caps):
        worst, flows = _box(dn, layout, baseline, base, full, offered, caps, limits)
        ac_it += flows
        if worst.ok:  # every part of the whole offer is safe
            return DirectionOutcome(offered.copy(), ["ok"] * n, True, ac_it)
    share = 0.0
    if fairness == "equitable":
        share, runs = _common_share(dn, layout, baseline, base, caps, limits)
        ac_it += runs
    net, idx = _opf_net(dn, baseline, bids, layout)
    lower = share * offered * (1 - 1e-6)
    net.sgen.loc[idx, "min_p_mw"] = np.where(layout.inj_sign > 0, lower, -offered)
    net.sgen.loc[idx, "max_p_mw"] = np.where(layout.inj_sign > 0, offered, -lower)
    tighten: dict[tuple[str, int], float] = {}
    binding: list[str] = []
    for _ in range(max_rounds):
        _set_limits(net, caps, tighten)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with kernels.timed("power_flows"):  # init="pf" diverges
                    pp.runopp(net, calculate_voltage_angles=True, numba=False)
            ok = bool(net.OPF_converged)
        except Exception as exc:  # OPFNotConverged and solver errors
            log.debug("%s: runopp failed: %s", dn.code, exc)
            ok = False
        if not ok:
            break
        x = np.clip(net.res_sgen.loc[idx, "p_mw"].to_numpy(float) * layout.inj_sign, 0, offered)
        x[x < MIN_MW] = 0.0
        d = check(dn, layout, baseline, x, limits, warm=base)
        ac_it += 1
        if not d.converged:
            break
        viol = violations(dn, d, caps)
        if not viol:  # the full set passes: so must every part of it
            worst, flows = _box(dn, layout, baseline, base, d, x, caps, limits)
            ac_it += flows
            if worst.violations is None:
                break  # a part of the set does not converge: no limit to tighten for it
            viol = worst.violations
        if not viol:
            binding = _binding(dn, net, caps)
            reasons = [
                "ok" if xi >= oi - MIN_MW else f"cut: {', '.join(binding) or 'AC OPF'}"
                for xi, oi in zip(x, offered, strict=True)
            ]
            return DirectionOutcome(x, reasons, True, ac_it, binding)
        for v in viol:
            tighten[(v.kind, v.pos)] = tighten.get((v.kind, v.pos), 0.0) + 2 * v.overshoot
    if fairness == "equitable" and share > 0:  # the common share's box is AC-verified: safe
        x = share * offered
        x[x < MIN_MW] = 0.0
        return DirectionOutcome(x, ["cut: common share"] * n, True, ac_it, [], "OPF fallback")
    return DirectionOutcome.rejected(n, "AC OPF did not converge to an AC-feasible point", ac_it)


def _box(
    dn: DistributionNetwork,
    layout: BidLayout,
    baseline: Injections,
    base: PowerFlowDetail,
    d: PowerFlowDetail,
    x: np.ndarray,
    caps: Caps,
    limits: Limits,
) -> tuple[Vertex, int]:
    """The worst critical vertex of the box [0, x] (``d`` its full set) and the flows run."""
    vertices = box_vertices(dn, base, d, layout, x, caps)[1:]
    checked = box_check(dn, layout, baseline, limits, caps, vertices, d)
    return worst_vertex([Vertex(x, d, []), *checked]), len(checked)


def _binding(dn: DistributionNetwork, net, caps: Caps) -> list[str]:
    """Limits the OPF solution sits on (within 1e-5 pu / 1e-3 percent points)."""
    from market_sim.grid.constraints import constraint_name

    out = []
    vm = net.res_bus["vm_pu"].to_numpy(float)
    for kind, val, lim, tol in (
        ("vmax", vm, net.bus["max_vm_pu"].to_numpy(float), 1e-5),
        ("vmin", -vm, -net.bus["min_vm_pu"].to_numpy(float), 1e-5),
        (
            "line",
            net.res_line["loading_percent"].to_numpy(float),
            net.line["max_loading_percent"].to_numpy(float),
            1e-3,
        ),
        (
            "trafo",
            net.res_trafo["loading_percent"].to_numpy(float),
            net.trafo["max_loading_percent"].to_numpy(float),
            1e-3,
        ),
    ):
        raw = caps.vmin if kind == "vmin" else getattr(caps, kind)
        with np.errstate(invalid="ignore"):
            hit = np.flatnonzero(np.nan_to_num(val - lim, nan=-1.0) > -tol)
        out += [constraint_name(dn.net, kind, int(p), float(raw[p])) for p in hit]
    return out
