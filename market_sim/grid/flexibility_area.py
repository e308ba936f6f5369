"""P-Q flexibility area of a DSO's interface to the transmission network.

Why: in the DSO-managed model (Givisiez et al., PSCC 2020, Fig. 3, step 2b) the DSO sends the TSO
aggregated offers at its interface. A price-quantity curve in MW hides two things the TSO needs:
how much *reactive* power the distribution network can take or give (PV inverters and batteries
are able to, at almost no cost), and how active and reactive flexibility interact through the
network limits (raising export also raises voltages, which absorbing reactive power relieves).
The P-Q flexibility area is the set of interface operating points (P, Q) the DSO's validated DER
can reach without violating its network limits; no peer simulator offers it, the paper names it as
beyond its scope.

Method (support-function / polygon inner approximation):

1. **Linearise at the baseline.** One AC power flow of the baseline, then one LU factorisation of
   its Newton-Raphson Jacobian and adjoint solves ``J^T lambda = dg/dx`` give, for the interface
   P and Q and every screened network constraint ``g``, the derivative with respect to active
   *and* reactive injection at every bus (``lambda`` at a bus's angle row is dg/dP, at its
   magnitude row dg/dQ).
2. **Screening.** Only constraints that come near their limit at the baseline or at one of a few
   corner activations (all up, all down, all reactive capability in either sign and their
   combinations, each an AC power flow) get a row at first; every AC check adds the constraints
   it finds violated, linearised at the violating point (constraint generation).
3. **Support points.** For each of ``directions`` angles ``theta`` a linear program maximises
   ``cos(theta) P_if + sin(theta) Q_if`` over the bid activations (0..validated MW) and the
   reactive set-points of the DER (inside each inverter's capability circle
   ``p^2 + q^2 <= sn^2``, an inscribed polygon so that the linear rows never allow more than the
   rating) subject to the linearised limits. Rows stay for later directions: a cut learnt in one
   direction is needed by its neighbours.
4. **AC check and tightening.** Each LP optimum is re-run as an AC power flow. If it violates a
   limit, the violated constraints are added (re-linearised there, with a margin that grows with
   every failure) and the LP is solved again (the shared loop of :mod:`.linearised`, settings
   :data:`~.linearised.FLEXIBILITY_AREA`); after its failure limit the set-points are moved
   back towards the best verified point so far in that direction (the baseline at worst) by
   bisection until the AC power flow passes. The baseline itself always passes: the limits
   are the *effective* ones of the validation
   (:func:`~market_sim.grid.constraints.effective_limits`: relaxed to the baseline level where
   the baseline already violates a limit, so flexibility may not make a violation worse).
5. **Hull.** The area is the convex hull of the AC-verified support points and the baseline.

The result is an **inner approximation**: every vertex is an AC-verified operating point whose
set-points are returned with it (the DSO can dispatch exactly that point), so each support value
is at most the true one; where the LP model is conservative (margins, a direction that had to
step back) the area falls short of the true region, never beyond it at a vertex. Points between
two vertices are reached by interpolating their set-points; the network responds to them
linearly to first order, so they hold up to second-order effects, which the margins absorb in
practice but which are not separately verified. The heuristic also means that two areas are
only approximately ordered: an area under tighter limits lies inside the looser one up to the
LPs' resolution (the tests allow 0.05 MW on the support function), not exactly.

Never raises on a failed power flow: without a converged baseline (or without the fast
power-flow model that supplies sensitivities) the area is the base point alone, ``verified`` is
False and ``message`` says why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from market_sim.grid.constraints import Caps, Violation, effective_limits
from market_sim.grid.flexibility_columns import Columns, bus_columns, capability_rows, columns_of
from market_sim.grid.flexibility_lp import Cuts, SupportLp, interface_and_constraint_sensitivities
from market_sim.grid.flow_summary import VIOLATION_TOL
from market_sim.grid.linearised import (
    FLEXIBILITY_AREA,
    Checked,
    Key,
    ac_check,
    constraint_generation,
    screen,
    violated_keys,
)
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.polygon import convex_hull
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.types import Injections, Limits

log = logging.getLogger(__name__)

#: Tolerance of the AC check: the same as the validators' (pu for voltages, % for loadings).
CHECK_TOL = VIOLATION_TOL
#: Support points closer than this (MW / Mvar) count as one.
POINT_TOL = 1e-6


@dataclass(frozen=True)
class FlexibilityArea:
    """The P-Q flexibility area of one DSO interface in one period.

    ``vertices`` (columns ``p_mw``, ``q_mvar``) is the polygon counter-clockwise, the convex hull
    of the AC-verified support points (and the baseline); injection into the transmission
    network is positive, as in :class:`~market_sim.types.PowerFlowResult`. ``operating_points``
    holds the set-points that produce each vertex (aligned with ``vertices``) and ``bid_mw`` the
    activation of every bid there (``[n_vertices, n_bids]``, bids in the order given).
    ``verified`` is True when every vertex passed its AC check within :data:`CHECK_TOL` of the
    effective limits and at least one point besides the baseline was found. ``support`` has one
    row per direction: angle, the verified point, its LP rounds and shrink factor.
    """

    vertices: pd.DataFrame
    base_p_mw: float
    base_q_mvar: float
    p_min_mw: float
    p_max_mw: float
    q_min_mvar: float
    q_max_mvar: float
    verified: bool
    lp_solves: int
    ac_power_flows: int
    operating_points: tuple[Injections, ...] = field(default=(), repr=False)
    bid_mw: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    support: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    reactive: bool = True
    tolerance: float = CHECK_TOL
    compute_s: float = 0.0
    message: str = ""

    def support_value(self, theta: float) -> float:
        """max over the area of cos(theta) P + sin(theta) Q (the support function)."""
        p = self.vertices["p_mw"].to_numpy(float)
        q = self.vertices["q_mvar"].to_numpy(float)
        return float(np.max(np.cos(theta) * p + np.sin(theta) * q))

    def contains(self, p_mw: float, q_mvar: float, tol: float = 1e-9) -> bool:
        """Whether (P, Q) lies in the polygon (boundary included, within ``tol``)."""
        p = self.vertices["p_mw"].to_numpy(float)
        q = self.vertices["q_mvar"].to_numpy(float)
        if len(p) == 1:
            return bool(np.hypot(p[0] - p_mw, q[0] - q_mvar) <= tol)
        if len(p) == 2:
            d = np.array([p[1] - p[0], q[1] - q[0]])
            t = np.clip(np.dot([p_mw - p[0], q_mvar - q[0]], d) / np.dot(d, d), 0.0, 1.0)
            return bool(np.hypot(p[0] + t * d[0] - p_mw, q[0] + t * d[1] - q_mvar) <= tol)
        pn, qn = np.roll(p, -1), np.roll(q, -1)
        length = np.hypot(pn - p, qn - q)
        cross = ((pn - p) * (q_mvar - q) - (qn - q) * (p_mw - p)) / np.maximum(length, 1e-300)
        return bool(np.all(cross >= -tol))


@dataclass(frozen=True)
class SupportPoint:
    """The AC-verified point of one support direction and the set-points that produce it."""

    theta: float
    p_mw: float
    q_mvar: float
    z: np.ndarray  # bid activations, then reactive set-point changes (see Columns)
    injections: Injections
    lp_rounds: int
    shrink: float  # 1, or the share of the LP step kept by the bisection back


@dataclass
class _Shared:
    """What every direction shares: network, limits, columns, the LP and its rows."""

    dn: DistributionNetwork
    baseline: Injections
    limits: Limits
    base: PowerFlowDetail
    caps: Caps
    der: Columns
    lp: SupportLp
    cuts: Cuts
    obj_p: np.ndarray  # interface P and Q on the bus variables
    obj_q: np.ndarray
    known: set[Key]
    power_flows: int

    def ac(self, z: np.ndarray) -> tuple[Injections, PowerFlowDetail, list[Violation] | None]:
        """AC power flow of set-points ``z`` and its violations (None: not converged)."""
        inj = self.der.injections(self.baseline, z)
        d, viol = ac_check(self.dn, inj, self.limits, self.caps, warm=self.base)
        self.power_flows += 1
        return inj, d, viol

    def passes(self, inj: Injections, viol: list[Violation] | None) -> bool:
        """AC-verified: converged, within the effective limits and every inverter's rating."""
        return viol is not None and not viol and self.der.within_ratings(inj)

    def learn(self, d: PowerFlowDetail, z: np.ndarray, keys: list[Key], violated: bool) -> bool:
        """Rows of ``keys`` linearised at ``d`` (set-points ``z``); False if there are none."""
        sens = interface_and_constraint_sensitivities(d, keys) if keys else None
        if sens is None:
            return False
        self.known |= set(keys)
        self.cuts.add(d, self.der.w_map @ z, keys, bus_columns(self.der, *sens)[2:], violated)
        return True


class _Direction:
    """Support point in direction ``theta`` (the :class:`~.linearised.Problem` here).

    The margins are per constraint (:class:`~.flexibility_lp.Cuts`), so the loop's common
    margin scale is not used.
    """

    def __init__(self, shared: _Shared, theta: float) -> None:
        self.shared, self.theta = shared, theta
        self.c = np.cos(theta) * shared.obj_p + np.sin(theta) * shared.obj_q
        self.lp_rounds = 0

    def support(self, p: float, q: float) -> float:
        return float(np.cos(self.theta) * p + np.sin(self.theta) * q)

    def solve(self, margin_scale: float) -> np.ndarray | None:
        z = self.shared.lp.maximise(self.c)
        self.lp_rounds += 1
        return None if z is None else np.clip(z, self.shared.lp.lower, self.shared.lp.upper)

    def check(self, z: np.ndarray, spare_flows: int) -> Checked:
        inj, d, viol = self.shared.ac(z)
        ok = self.shared.passes(inj, viol)
        value = self.support(d.result.interface_p_mw, d.result.interface_q_mvar) if ok else 0.0
        return Checked(z, viol is not None, ok, value, 1, (inj, d, viol))

    def learn(self, at: Checked) -> bool:
        """At a verified point re-linearise what binds (a polishing step); at a violating one
        add the violated constraints, their margins grown."""
        _, d, viol = at.record
        if at.ok:
            keys = self.shared.cuts.binding()
        else:
            # Every violated constraint gets a new row (its old ones stay: loading cuts are
            # kept, voltage rows replaced), so the cap applies to all: none counts as known.
            _, keys = violated_keys(self.shared.dn, viol, set(), FLEXIBILITY_AREA)
        return self.shared.learn(d, at.x, keys, violated=not at.ok)


def _corners(
    dn: DistributionNetwork,
    der: Columns,
    baseline: Injections,
    limits: Limits,
    base: PowerFlowDetail,
) -> list[PowerFlowDetail]:
    """AC power flows of the corner activations: all up / all down, all reactive capability
    either way, and their combinations (the screening points besides the baseline)."""
    up = der.layout.inj_sign > 0
    out = []
    for px in (np.zeros(der.n_x), np.where(up, der.ub_x, 0.0), np.where(~up, der.ub_x, 0.0)):
        for qs in (0.0, 1.0, -1.0) if len(der.sn) else (0.0,):
            if not px.any() and qs == 0.0:
                continue
            qq = qs * np.sqrt(np.clip(der.sn**2 - der.p0**2, 0.0, None)) - der.q0
            inj = der.injections(baseline, np.r_[px, qq])
            out.append(run_power_flow_detailed(dn, inj, limits, write=False, warm_start=base))
    return out


def _shared(
    dn: DistributionNetwork,
    baseline: Injections,
    bids: pd.DataFrame,
    limits: Limits,
    reactive: bool,
) -> _Shared | FlexibilityArea:
    """Baseline, columns, screened rows linearised at the baseline; or the base-only area."""
    base = run_power_flow_detailed(dn, baseline, limits, write=False)
    n_bids = len(bids)
    if not base.converged:
        nan = float("nan")
        why = "baseline power flow did not converge"
        return _base_only(nan, nan, baseline, n_bids, why, ac_power_flows=1)
    base_p, base_q = base.result.interface_p_mw, base.result.interface_q_mvar
    caps = effective_limits(dn, base, limits)
    der = columns_of(dn, baseline, bids, base, reactive)
    common: dict[str, object] = {"reactive": reactive, "ac_power_flows": 1}
    if der.n == 0 or not np.any(der.ub_x > 0) and not len(der.sn):
        return _base_only(base_p, base_q, baseline, n_bids, "no flexibility offered", **common)
    if base.state is None:
        why = "no sensitivities (pandapower fallback)"
        return _base_only(base_p, base_q, baseline, n_bids, why, **common)
    corners = _corners(dn, der, baseline, limits, base)
    keys = screen(dn, caps, [base, *corners], FLEXIBILITY_AREA)
    sens = interface_and_constraint_sensitivities(base, keys)
    if sens is None:
        common["ac_power_flows"] = 1 + len(corners)
        return _base_only(base_p, base_q, baseline, n_bids, "no sensitivities", **common)
    # Bounds: bids 0..validated MW; reactive set-points within the rating (polygon rows).
    lower = np.r_[np.zeros(der.n_x), -der.sn - der.q0]
    upper = np.r_[der.ub_x, der.sn - der.q0]
    lp = SupportLp(lower, upper, der.w_map)
    lp.add_z_rows(*capability_rows(der))
    cols = bus_columns(der, *sens)
    cuts = Cuts(caps, lp, base)
    cuts.add(base, np.zeros(der.w_map.shape[0]), keys, cols[2:], violated=False)
    return _Shared(
        dn, baseline, limits, base, caps, der, lp, cuts, cols[0], cols[1], set(keys),
        1 + len(corners),
    )  # fmt: skip


_Point = tuple[np.ndarray, Injections, PowerFlowDetail, float]  # z, injections, flow, shrink


def _shrink(
    shared: _Shared, direction: _Direction, z: np.ndarray, found: list[SupportPoint]
) -> _Point | None:
    """Bisect between the failed LP point ``z`` and the best verified point so far in this
    direction (the baseline at worst, which always passes): the step back keeps what the LP
    gained over the area found so far. None if no step passes."""
    base = shared.base.result
    score = [direction.support(f.p_mw, f.q_mvar) for f in found]
    if found and max(score) > direction.support(base.interface_p_mw, base.interface_q_mvar):
        anchor = found[int(np.argmax(score))].z
    else:
        anchor = np.zeros(shared.der.n)
    lo, hi, point = 0.0, 1.0, None  # the last passing step is the largest
    for _ in range(FLEXIBILITY_AREA.max_shrink):
        t = 0.5 * (lo + hi)
        zt = anchor + t * (z - anchor)
        inj, d, viol = shared.ac(zt)
        if shared.passes(inj, viol):
            lo, point = t, (zt, inj, d, t)
        else:
            hi = t
    return point


def _support(shared: _Shared, theta: float, found: list[SupportPoint]) -> SupportPoint | None:
    """The verified support point in direction ``theta`` (None if none verified)."""
    direction = _Direction(shared, theta)
    search = constraint_generation(direction, FLEXIBILITY_AREA, floor=-np.inf)
    point: _Point | None = None
    if search.best is not None:
        inj, d, _ = search.best.record
        point = (search.best.x, inj, d, 1.0)
    elif search.last_failed is not None:
        point = _shrink(shared, direction, search.last_failed.x, found)
    if point is None:
        log.debug("%s: no verified support point at theta=%.3f", shared.dn.code, theta)
        return None
    z, inj, d, shrink = point
    p, q = d.result.interface_p_mw, d.result.interface_q_mvar
    return SupportPoint(theta, p, q, z, inj, direction.lp_rounds, shrink)


def _area(shared: _Shared, found: list[SupportPoint], reactive: bool, t0: float) -> FlexibilityArea:
    """The hull of the baseline and the support points, with their set-points."""
    base = shared.base.result
    points = np.array(
        [[base.interface_p_mw, base.interface_q_mvar]] + [[f.p_mw, f.q_mvar] for f in found]
    )
    zs = [np.zeros(shared.der.n)] + [f.z for f in found]
    injs = [shared.baseline.copy()] + [f.injections for f in found]
    # Drop duplicates before the hull (keep the first: the baseline, then by angle).
    keep: list[int] = []
    for i in range(len(points)):
        if all(np.hypot(*(points[i] - points[j])) > POINT_TOL for j in keep):
            keep.append(i)
    hull = [keep[i] for i in convex_hull(points[keep])]
    vertices = pd.DataFrame({"p_mw": points[hull, 0], "q_mvar": points[hull, 1]})
    columns = ("theta", "p_mw", "q_mvar", "lp_rounds", "shrink")
    support = pd.DataFrame({c: [getattr(f, c) for f in found] for c in columns})
    n_x = shared.der.n_x
    return FlexibilityArea(
        vertices=vertices,
        base_p_mw=base.interface_p_mw,
        base_q_mvar=base.interface_q_mvar,
        p_min_mw=float(vertices["p_mw"].min()),
        p_max_mw=float(vertices["p_mw"].max()),
        q_min_mvar=float(vertices["q_mvar"].min()),
        q_max_mvar=float(vertices["q_mvar"].max()),
        verified=bool(found),
        lp_solves=shared.lp.solves,
        ac_power_flows=shared.power_flows,
        operating_points=tuple(injs[i] for i in hull),
        bid_mw=np.array([zs[i][:n_x] for i in hull]).reshape(len(hull), n_x),
        support=support,
        reactive=reactive,
        compute_s=time.perf_counter() - t0,
        message="" if found else "no support point passed its AC check",
    )


def _base_only(
    base_p: float, base_q: float, baseline: Injections, n_bids: int, why: str, **kw: object
) -> FlexibilityArea:
    log.warning("flexibility area: %s; returning the base point only", why)
    return FlexibilityArea(
        vertices=pd.DataFrame({"p_mw": [base_p], "q_mvar": [base_q]}),
        base_p_mw=base_p,
        base_q_mvar=base_q,
        p_min_mw=base_p,
        p_max_mw=base_p,
        q_min_mvar=base_q,
        q_max_mvar=base_q,
        verified=False,
        lp_solves=0,
        operating_points=(baseline.copy(),),
        bid_mw=np.zeros((1, n_bids)),
        message=why,
        **kw,  # type: ignore[arg-type]
    )


def flexibility_area(
    dn: DistributionNetwork,
    baseline: Injections,
    bids: pd.DataFrame,
    limits: Limits,
    directions: int = 16,
    reactive: bool = True,
) -> FlexibilityArea:
    """P-Q flexibility area of ``dn``'s interface around ``baseline`` (see the module docstring).

    ``bids`` are validated bids (columns of :data:`~market_sim.types.BID_COLUMNS`, ``mw`` the
    validated quantity, both directions); ``reactive`` adds the reactive capability of the PV
    sgens and storages that bid (``|s| <= sn_mva``). ``directions`` support angles are spread
    evenly over the circle, starting at +P (so P max and P min are two of them when it is
    even).
    """
    t0 = time.perf_counter()
    directions = max(int(directions), 1)
    shared = _shared(dn, baseline, bids.reset_index(drop=True), limits, reactive)
    if isinstance(shared, FlexibilityArea):
        return shared
    found: list[SupportPoint] = []
    for k in range(directions):
        point = _support(shared, 2 * np.pi * k / directions, found)
        if point is not None:
            found.append(point)
    area = _area(shared, found, reactive, t0)
    log.debug(
        "%s: flexibility area P %.3f..%.3f MW, Q %.3f..%.3f Mvar, %d vertices, "
        "%d LPs, %d power flows, %d constraints, %.2f s",
        dn.code,
        area.p_min_mw,
        area.p_max_mw,
        area.q_min_mvar,
        area.q_max_mvar,
        len(area.vertices),
        area.lp_solves,
        area.ac_power_flows,
        len(shared.known),
        area.compute_s,
    )
    return area


__all__ = ["FlexibilityArea", "SupportPoint", "flexibility_area"]
