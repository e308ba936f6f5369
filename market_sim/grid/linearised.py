"""Constraint generation on linearised network limits: the one mechanism behind four uses.

Four parts of the simulation ask the same question of a distribution network: which injection
changes keep every voltage and branch loading within its limits? Each answers it the same way
(successive linear programming with constraint generation):

1. **screen** the constraints that can bind (near their limit at a few AC power flows), spread
   over feeders (:func:`screen`);
2. **linearise** them at an operating point, one adjoint solve per constraint with the
   power-flow Jacobian, into rows ``A x <= b`` (:func:`gradients`, :func:`bounds`,
   :func:`rows`);
3. solve the user's LP, **check** the result with an AC power flow, add or re-linearise the
   constraints found violated (:func:`violated_keys`) with margins that grow, and repeat
   (:func:`constraint_generation`).

What differs between the uses is the LP and how much each may spend, which is why all their
margins and round limits are here, side by side (one :class:`Settings` per use):

* :data:`VALIDATION` -- :mod:`.linear_opf`: the DSO's bid validation (max volume or fairness);
* :data:`TSO_MANAGED` -- :mod:`market_sim.markets.central`: the TSO's integrated clearing;
* :data:`LOCAL_MARKET` -- :mod:`market_sim.markets.local_market`: the DSO buys relief;
* :data:`FLEXIBILITY_AREA` -- :mod:`.flexibility_area`: P-Q support points.

Why margins grow: a linearisation is first order, so an LP point on a row's boundary lands a
second-order error beyond the true limit; each failed AC check widens the margin so that the
next point lands inside. Why the AC check decides: only an AC-verified point is ever used, so
screening and linearisation errors cost rounds, never safety.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from market_sim.grid.constraints import (
    BidLayout,
    Caps,
    Violation,
    stacked_excess,
    values,
    violations,
)
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail, memoised, run_power_flow_detailed
from market_sim.grid.sensitivities import injection_sensitivities
from market_sim.types import Injections, Limits

Key = tuple[str, int]
#: Constraint kinds, in the order every use screens, adds and reports them.
KINDS = ("vmax", "vmin", "line", "trafo")
#: The sensitivity (of :func:`~market_sim.grid.sensitivities.injection_sensitivities`) of a kind.
SENSITIVITY_KIND = {"vmax": "vm", "vmin": "vm", "line": "line", "trafo": "trafo"}


@dataclass(frozen=True)
class Settings:
    """How one use generates constraints: its margins, screening and round limits.

    ``margin`` is aimed inside each limit (pu for voltages, percent points for loadings),
    times :meth:`margin_scale` of the failures so far (``1 + growth f``, or ``growth ** f``
    when ``geometric``). ``screen_margin``: a constraint is screened in when it comes this close
    to its limit; ``max_screen`` / ``max_add`` cap the constraints per kind screened at first /
    added by one AC check (None: all). ``max_rounds`` caps the AC checks, ``max_failures`` the
    failed ones; ``max_polish`` re-linearisations at a verified point follow while the value
    grows by at least ``polish_gain`` (times the user's unit). ``max_shrink``: bisection
    steps back towards a verified point when none was found. ``reuse_tol`` (pu): the
    Jacobian factorisation is reused while no voltage moved more than this.
    """

    margin: Mapping[str, float]
    max_rounds: int
    margin_growth: float = 1.0
    geometric: bool = False
    screen_margin: Mapping[str, float] | None = None
    max_screen: int | None = None
    max_add: int | None = None
    max_failures: int | None = None
    max_polish: int = 0
    polish_gain: float = 0.0
    max_shrink: int = 0
    reuse_tol: float = 0.0
    #: ``b = cap - value - margin`` instead of ``cap - margin - value``: the same number up to
    #: the last bit, kept per use because the shipped scenarios' results depend on that bit.
    headroom_first: bool = False

    def margin_scale(self, failures: int) -> float:
        """The factor on :attr:`margin` after ``failures`` failed AC checks."""
        if self.geometric:
            return self.margin_growth**failures
        return 1.0 + self.margin_growth * failures


#: DSO bid validation (:mod:`.linear_opf`): few, well-chosen rows on a large grid (the zone
#: spread makes 40 per kind enough), small margins growing by one step per failure, up to two
#: polishing re-linearisations while they add 0.1 % of the offered volume.
VALIDATION = Settings(
    margin={"vmax": 1e-4, "vmin": 1e-4, "line": 0.05, "trafo": 0.05},
    max_rounds=10,
    screen_margin={"vmax": 0.01, "vmin": 0.01, "line": 10.0, "trafo": 10.0},
    max_screen=40,
    max_add=20,
    max_polish=2,
    polish_gain=1e-3,
    reuse_tol=0.05,
)
#: The TSO's integrated clearing (:mod:`market_sim.markets.central`): every screened row of
#: every DSO, a larger margin (the TSO cannot step back), multiplied by 4 when a DSO fails on
#: rows it already has; a DSO still failing after 3 clearings is dropped.
TSO_MANAGED = Settings(
    margin={"vmax": 5e-4, "vmin": 5e-4, "line": 0.5, "trafo": 0.5},
    max_rounds=3,
    margin_growth=4.0,
    geometric=True,
    screen_margin={"vmax": 0.01, "vmin": 0.01, "line": 10.0, "trafo": 10.0},
    headroom_first=True,
)
#: The DSO's local market (:mod:`market_sim.markets.local_market`): only the violated
#: constraints, re-linearised at every purchase, a fixed margin (the purchase is topped up).
LOCAL_MARKET = Settings(
    margin={"vmax": 1e-3, "vmin": 1e-3, "line": 0.5, "trafo": 0.5},
    max_rounds=4,
    margin_growth=0.0,
)
#: P-Q flexibility areas (:mod:`.flexibility_area`), per support direction: a wide screen
#: (corner activations reach far), a constraint's margin grows with its own failures; after 4
#: failures the set-points are bisected back (7 steps) towards the best verified point. At
#: most 3 failures, a verified point and one polishing step: 5 AC checks.
FLEXIBILITY_AREA = Settings(
    margin={"vmax": 2e-4, "vmin": 2e-4, "line": 0.2, "trafo": 0.2},
    max_rounds=5,
    screen_margin={"vmax": 0.02, "vmin": 0.02, "line": 20.0, "trafo": 20.0},
    max_screen=300,
    max_add=8,
    max_failures=4,
    max_polish=1,
    polish_gain=1e-3,
    max_shrink=7,
)


# --------------------------------------------------------------------------------------------
# Screening


def constraint_zones(dn: DistributionNetwork) -> dict[str, np.ndarray]:
    """Zone of every constraint: buses joined by in-service lines and closed switches.

    Transformers separate zones, so on a MV-LV grid every LV feeder network is its own zone;
    a line belongs to the zone of its buses, every transformer is a zone of its own. Cached
    per net (zones depend only on the topology).
    """
    cache = dn.solver_cache
    if "constraint_zones" not in cache:
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
        cache["constraint_zones"] = {
            "vmax": bus_zone,
            "vmin": bus_zone,
            "line": line_zone,
            "trafo": n_zones + np.arange(len(net.trafo)),
        }
    return cache["constraint_zones"]


def spread(pos: np.ndarray, badness: np.ndarray, zone: np.ndarray, limit: int | None) -> np.ndarray:
    """Up to ``limit`` of ``pos``: the worst of every zone first, then the second worst, ...

    Why: violations come in clusters along one feeder whose constraints have nearly the same
    sensitivities; the worst 40 of one cluster buy one row's worth of information and leave the
    next feeder to the next round. Ties are broken by position, so the choice is deterministic.
    Without a limit nothing needs choosing: ``pos`` is returned as given.
    """
    if limit is None or len(pos) == 0:
        return pos
    order = np.lexsort((pos, -badness))  # worst first
    if len(pos) <= limit:  # every one is picked: in that order (what the ranks below give)
        return pos[order]
    pos, z = pos[order], zone[pos[order]]
    zone_order = np.lexsort((np.arange(len(z)), z))  # stable group by zone, worst first within
    rank = np.empty(len(z), dtype=np.int64)
    starts = np.r_[True, z[zone_order][1:] != z[zone_order][:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(z)), 0))
    rank[zone_order] = np.arange(len(z)) - group_start
    pick = np.lexsort((np.arange(len(z)), rank))[:limit]  # by rank, then by badness
    return pos[np.sort(pick)]


def screen(
    dn: DistributionNetwork, caps: Caps, points: list[PowerFlowDetail], settings: Settings
) -> list[Key]:
    """Constraints within ``settings.screen_margin`` of their limit at any converged point."""
    assert settings.screen_margin is not None
    zones = constraint_zones(dn)
    # Every kind at once, end to end (Caps.stacked): elementwise, the same numbers.
    stacked, where = caps.stacked
    worst = np.full(len(stacked), -np.inf)
    for d in points:
        if d.converged:
            worst = np.fmax(worst, stacked_excess(d, caps))
    # No NaN is left: fmax takes the other operand of a NaN, and worst starts at -inf.
    keys: list[Key] = []
    for kind in KINDS:
        of_kind = worst[where[kind]]
        near = np.flatnonzero(of_kind > -settings.screen_margin[kind])
        near = spread(near, of_kind[near], zones[kind], settings.max_screen)
        keys += [(kind, p) for p in near.tolist()]
    return keys


def violated_keys(
    dn: DistributionNetwork, viol: list[Violation], known: set[Key], settings: Settings
) -> tuple[list[Key], list[Key]]:
    """What an AC check teaches: the violated keys already known, and new ones to add.

    New ones are capped at ``settings.max_add`` per kind, spread over zones (worst first).
    """
    zones = constraint_zones(dn)
    again = [(v.kind, v.pos) for v in viol if (v.kind, v.pos) in known]
    new: list[Key] = []
    for kind in KINDS:
        mine = [v for v in viol if v.kind == kind and (v.kind, v.pos) not in known]
        pos = np.array([v.pos for v in mine], dtype=np.int64)
        over = np.array([v.overshoot for v in mine], dtype=float)
        new += [(kind, int(p)) for p in spread(pos, over, zones[kind], settings.max_add)]
    return again, new


# --------------------------------------------------------------------------------------------
# Rows A x <= b


def gradients(
    d: PowerFlowDetail,
    keys: list[Key],
    buses: np.ndarray,
    reuse: dict | None = None,
    reuse_tol: float = 0.0,
) -> np.ndarray | None:
    """d(constraint)/d(active injection, MW) at ``buses``, oriented as :func:`values`.

    One adjoint solve per key (see :func:`~market_sim.grid.sensitivities.injection_sensitivities`;
    ``reuse`` keeps the caller's last factorisation). None without the fast power-flow model.
    """
    if not keys:
        return np.zeros((0, len(buses)))
    sens = injection_sensitivities(
        d, [(SENSITIVITY_KIND[k], p) for k, p in keys], buses, reuse, reuse_tol
    )
    if sens is None:
        return None
    return _oriented(keys, sens)


def point_gradients(d: PowerFlowDetail, keys: list[Key], buses: np.ndarray) -> np.ndarray | None:
    """:func:`gradients` at ``d`` (exact factors), each key's sensitivities kept on ``d``.

    A validation linearises its baseline again in every round of both directions, mostly at
    the same keys: only the keys not asked before are solved for. The same numbers as
    :func:`gradients`: each right-hand side of an adjoint solve is solved on its own
    (:func:`~.adjoint.adjoint_solve`), whatever the others.
    """
    if not keys:
        return np.zeros((0, len(buses)))
    if d.state is None:
        return None
    kept: _KeptRows = memoised(d, "sensitivities", None, _KeptRows)
    missing = [k for k in dict.fromkeys(keys) if k not in kept.row]
    if missing:
        # Its factors are kept with it too (reused only at exactly its voltages: exact).
        factors = memoised(d, "factors", None, dict)
        sens = injection_sensitivities(
            d, [(SENSITIVITY_KIND[k], p) for k, p in missing], reuse=factors, reuse_tol=0.0
        )
        assert sens is not None  # d has a state
        kept.add(missing, sens)
    rows = np.array([kept.row[k] for k in keys], dtype=np.int64)
    cols = np.where(buses >= 0, buses, len(d.state.v))  # the zero column past the buses
    return _oriented(keys, kept.data[np.ix_(rows, cols)])


class _KeptRows:
    """Sensitivity rows of one point over all its solver buses, one per key, in the order
    they were computed, with a zero column appended (for bids without a solver bus)."""

    def __init__(self) -> None:
        self.row: dict[Key, int] = {}
        self.data = np.zeros((0, 0))

    def add(self, keys: list[Key], sens: np.ndarray) -> None:
        first = len(self.row)
        self.row.update((k, first + i) for i, k in enumerate(keys))
        new = np.hstack([sens, np.zeros((len(sens), 1))])
        self.data = np.vstack([self.data, new]) if len(self.data) else new


def _oriented(keys: list[Key], sens: np.ndarray) -> np.ndarray:
    """Sensitivities oriented as :func:`values` (a ``vmin`` row is negated)."""
    orient = np.array([-1.0 if k == "vmin" else 1.0 for k, _ in keys])[:, None]
    # Row-major: a row is one constraint, and a dot over a strided row sums in another order
    # than over a contiguous one (the last bit of every right-hand side would depend on it).
    # Written so in one pass: the TSO's rows are [keys x 13k bids] on the 10k-bus grid.
    return np.multiply(orient, sens, order="C")


def bounds(
    d: PowerFlowDetail,
    keys: list[Key],
    a: np.ndarray,
    x_at: np.ndarray | None,
    caps: Caps,
    settings: Settings,
    scale: float | np.ndarray = 1.0,
) -> np.ndarray:
    """Right-hand sides of ``a x <= b``: each row through the exact value of its key at ``d``.

    ``d`` is the power flow at ``x = x_at`` (None: at ``x = 0``, no shift); ``a`` may come
    from an earlier point (a voltage row keeps its gradient while the exact value removes the
    drift). The margin is ``settings.margin`` times ``scale`` (common, or one per key).
    """
    margin = np.array([settings.margin[k] for k, _ in keys]) * scale
    # Each key's limit and value at d, taken from every kind's end to end (a vmin key's
    # arrays are negated once, not once per key); the subtractions are elementwise, the
    # same numbers.
    at = stacked_positions(caps, keys)
    cap = caps.stacked[0][at]
    g = np.concatenate([values(d, kind) for kind in KINDS])[at]
    b = cap - g - margin if settings.headroom_first else cap - margin - g
    if x_at is not None:
        for r in range(len(keys)):
            # One dot per row, as the rows were first written: a matrix-vector product sums
            # in another order (last bits). Skipped at x = 0: OpenBLAS threads a dot over ten
            # thousand bids, which made the TSO's rows cost seconds per clearing (10k grid).
            b[r] += float(a[r] @ x_at)
    return b


def rows(
    d: PowerFlowDetail,
    keys: list[Key],
    layout: BidLayout,
    caps: Caps,
    settings: Settings,
    scale: float = 1.0,
    x_at: np.ndarray | None = None,
    reuse: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``A x <= b`` over the bids of ``layout`` (MW), linearised at ``d`` (bids at ``x_at``).

    ``reuse`` keeps the caller's last factorisation (within ``settings.reuse_tol``).
    """
    a = gradients(d, keys, layout.case_bus(d), reuse, settings.reuse_tol)
    if a is None:
        raise RuntimeError("no sensitivities: network not supported by the fast power flow")
    a *= layout.inj_sign  # a is this call's own array
    return a, bounds(d, keys, a, x_at, caps, settings, scale)


# --------------------------------------------------------------------------------------------
# The box of activations: any part of a validated set
#
# A validated quantity q_j per bid promises that every activation x with 0 <= x_j <= q_j (any
# subset, any partial quantity, any bid that fails to deliver) keeps the network within the
# validator's limits. On a linearised row g0 + a x <= cap the worst case over that box is
# g0 + max(a, 0) q: still linear in q, so the validators' LPs stay LPs (:func:`worst_case`).
# It is reached at the row's *critical vertex* (each bid at q_j where its coefficient pushes
# the row up, else 0); the AC check runs a power flow at the full set and at the critical
# vertices of the rows that come within :data:`BOX_NEAR` of their limit (worst first, at most
# :data:`MAX_VERTICES`), so that the linearisation's error is caught where the box is worst.
# The guarantee is exact for the linear model; under AC it holds at the vertices checked, and
# between them up to the curvature of the power flow (tests/test_box_validation.py measures
# random and vertex subsets within VIOLATION_TOL = 1e-6 pu / 1e-6 % of the limits).

#: A row's critical vertex is AC-checked when the row's worst case comes this close to its
#: limit (pu for voltages, percent points for loadings): a quarter of the screening margin.
BOX_NEAR = {"vmax": 2.5e-3, "vmin": 2.5e-3, "line": 2.5, "trafo": 2.5}
#: Vertices AC-checked per point besides the full set (the most critical rows' first).
MAX_VERTICES = 8
#: Constraints linearised per kind to find a box's vertices: every one within the screening
#: margin at either end of the box on a MV grid. Not the 40 of the LP's screen: on a MV grid
#: all buses are one zone, and the 40 nearest the limit at the full set can all sit on one
#: feeder while another feeder's worst vertex is the one over the limit.
MAX_BOX_KEYS = 400
#: The screen of :func:`box_vertices`: the validation's, with :data:`MAX_BOX_KEYS` per kind.
BOX_SCREEN = replace(VALIDATION, max_screen=MAX_BOX_KEYS)


def worst_case(a: np.ndarray) -> np.ndarray:
    """Rows over the box of activations: ``max(a, 0) q`` bounds ``a x`` for every x in [0, q]."""
    return np.maximum(a, 0.0)


def critical_vertices(
    a: np.ndarray,
    q: np.ndarray,
    excess: np.ndarray,
    near: np.ndarray,
    first: tuple[np.ndarray, ...] = (),
) -> list[np.ndarray]:
    """The full set ``q``, the vertices ``first``, and the distinct critical vertices of the
    rows of ``a`` whose estimated worst-case ``excess`` over their limit is above ``-near``,
    worst first.

    At most :data:`MAX_VERTICES` of the rows' besides ``q``; a vertex equal to an earlier one
    is not repeated (the full set is the critical vertex of every row without a negative
    coefficient among the activated bids).
    """
    out, seen = [q], {q.tobytes()}
    for v in first:
        if v.tobytes() not in seen:
            seen.add(v.tobytes())
            out.append(v)
    rows_from = len(out)
    order = np.argsort(-excess, kind="stable")
    far = np.flatnonzero(excess[order] <= -near[order])  # NaN is not far: as in the loop
    rows = order[: far[0]] if len(far) else order
    # Rows with the same signs give the same vertex: only the first of them builds it.
    signs = np.packbits(a[rows] > 0, axis=1)
    patterns: set[bytes] = set()
    for r, pattern in zip(rows.tolist(), signs, strict=True):
        if len(out) - rows_from >= MAX_VERTICES:
            break
        if pattern.tobytes() in patterns:
            continue
        patterns.add(pattern.tobytes())
        v = np.where(a[r] > 0, q, 0.0)
        if v.tobytes() not in seen:
            seen.add(v.tobytes())
            out.append(v)
    return out


def near_rows(keys: list[Key]) -> np.ndarray:
    """:data:`BOX_NEAR` of each key, in its row's unit."""
    return np.array([BOX_NEAR[k] for k, _ in keys], dtype=float)


def box_vertices(
    dn: DistributionNetwork,
    base: PowerFlowDetail,
    d: PowerFlowDetail,
    layout: BidLayout,
    q: np.ndarray,
    caps: Caps,
) -> list[np.ndarray]:
    """Critical vertices of the box [0, q] for a point ``d`` (the full set q) without LP rows.

    The constraints within the validation screen's margin of their limit at the baseline
    ``base`` or at ``d`` are linearised at both ends of the box (a row far from its limit at
    the full set may be near it at a vertex that drops the bids pulling it down; and a bid's
    effect at small activations may differ in sign from its effect at the full set). At
    ``base`` a vertex's value is estimated as ``g0 + max(a, 0) q``; at ``d`` as the row's
    value there plus what the bids the vertex drops pulled it down by.
    """
    # Each direction's full set: bids of opposite directions offset each other in the full set.
    fulls = tuple(v for s in (1.0, -1.0) if (v := np.where(layout.inj_sign == s, q, 0.0)).any())
    if d.state is None or not d.converged:
        return critical_vertices(np.zeros((0, len(q))), q, np.zeros(0), np.zeros(0), fulls)
    keys = screen(dn, caps, [base, d], BOX_SCREEN)
    ends = [(p, x) for p, x in ((base, np.zeros_like(q)), (d, q)) if p.state is not None]
    # The baseline is linearised in every round of both directions: its rows are kept on it.
    grads = [
        (point_gradients if p is base else gradients)(p, keys, layout.case_bus(p)) for p, _ in ends
    ]
    if not keys or any(g is None for g in grads):
        return critical_vertices(np.zeros((0, len(q))), q, np.zeros(0), np.zeros(0), fulls)
    signed = [g * layout.inj_sign for g in grads]
    over = np.concatenate(
        [
            _excess_at(p, keys, caps) + worst_case(g) @ q - g @ x
            for (p, x), g in zip(ends, signed, strict=True)
        ]
    )
    near = np.concatenate([near_rows(keys)] * len(ends))
    return critical_vertices(np.vstack(signed), q, over, near, fulls)


def _excess_at(d: PowerFlowDetail, keys: list[Key], caps: Caps) -> np.ndarray:
    """``values(d, k)[i] - cap_of(caps, k)[i]`` of every key ``(k, i)``
    (:func:`~.constraints.excess`, which the screen of ``d`` has computed already)."""
    return stacked_excess(d, caps)[stacked_positions(caps, keys)]


def stacked_positions(caps: Caps, keys: list[Key]) -> np.ndarray:
    """Where each key ``(k, i)`` sits in the kinds' arrays end to end (:attr:`Caps.stacked`):
    one gather reads the keys of every kind."""
    where = caps.stacked[1]
    return np.array([where[k].start + i for k, i in keys], dtype=np.int64)


@dataclass(frozen=True)
class Vertex:
    """An AC check of one vertex ``x`` of a box: its power flow and what it violates (None:
    not converged)."""

    x: np.ndarray
    detail: PowerFlowDetail
    violations: list[Violation] | None

    @property
    def ok(self) -> bool:
        return self.violations is not None and not self.violations

    @property
    def overshoot(self) -> float:
        """The largest overshoot (inf when not converged, 0 when within every limit)."""
        if self.violations is None:
            return np.inf
        return max((v.overshoot for v in self.violations), default=0.0)


def box_check(
    dn: DistributionNetwork,
    layout: BidLayout,
    baseline: Injections,
    limits: Limits,
    caps: Caps,
    vertices: list[np.ndarray],
    warm: PowerFlowDetail | None = None,
) -> list[Vertex]:
    """AC power flow of every vertex (the first, the full set, warm-starts the others)."""
    out: list[Vertex] = []
    for x in vertices:
        d, viol = ac_check(dn, layout.injections(baseline, x), limits, caps, warm)
        out.append(Vertex(x, d, viol))
        if len(out) == 1 and d.converged:
            warm = d
    return out


def worst_vertex(checked: list[Vertex]) -> Vertex:
    """The vertex that fails worst (the first of equals); the first one when all pass."""
    return max(checked, key=lambda v: v.overshoot)


# --------------------------------------------------------------------------------------------
# The AC check and the loop
def ac_check(
    dn: DistributionNetwork,
    inj: Injections,
    limits: Limits,
    caps: Caps,
    warm: PowerFlowDetail | None = None,
) -> tuple[PowerFlowDetail, list[Violation] | None]:
    """AC power flow of ``inj`` and what it violates beyond ``caps`` (None: not converged)."""
    d = run_power_flow_detailed(dn, inj, limits, write=False, warm_start=warm)
    return d, (violations(dn, d, caps) if d.converged else None)


@dataclass
class Checked:
    """An AC check of an LP point ``x``.

    ``ok``: converged and within every limit the user checks; ``value`` is the user's objective
    at the AC point (compared across verified points); ``flows`` the AC power flows spent;
    ``record`` whatever the user keeps of the check (power flow, injections, ...).
    """

    x: np.ndarray
    converged: bool
    ok: bool
    value: float = 0.0
    flows: int = 1
    record: Any = None


class Problem(Protocol):
    """What a use supplies to :func:`constraint_generation`: its LP and its AC check."""

    def solve(self, margin_scale: float) -> np.ndarray | None:
        """The LP optimum over the current rows, or None when there is none."""

    def check(self, x: np.ndarray, spare_flows: int) -> Checked:
        """AC check of ``x`` (``spare_flows`` more power flows allowed for stepping back)."""

    def learn(self, at: Checked) -> bool:
        """Add / re-linearise rows at a checked point; False when there is nothing to learn."""


@dataclass(frozen=True)
class Search:
    """How :func:`constraint_generation` ended.

    ``best``: the verified point of largest value (None if none beat the floor);
    ``last_failed``: the last point that failed its check; ``ended``: ``verified``,
    ``infeasible`` (no LP optimum), ``diverged``, ``overshoot`` (a polishing step failed),
    ``stuck`` (nothing to learn) or ``exhausted`` (round or failure limit).
    """

    best: Checked | None
    last_failed: Checked | None
    ended: str
    checks: int
    failures: int


def constraint_generation(
    problem: Problem, settings: Settings, floor: float = 0.0, gain_unit: float = 1.0
) -> Search:
    """Solve, AC-check, learn from the check, repeat (see the module docstring).

    A verified point is kept if its value beats the best so far (``floor`` at first); it is
    polished (re-linearised where the model is accurate) at most ``settings.max_polish``
    times, while that gains at least ``settings.polish_gain * gain_unit``. A failure after a
    verified point ends the search (the verified point stands); otherwise every failure grows
    the margin scale passed to the next solve.
    """
    checks = failures = polish = 0
    best: Checked | None = None
    last_failed: Checked | None = None
    best_value = floor
    max_failures = np.inf if settings.max_failures is None else settings.max_failures
    ended = "exhausted"
    while checks < settings.max_rounds and failures < max_failures:
        x = problem.solve(settings.margin_scale(failures))
        if x is None:
            ended = "infeasible"
            break
        # A check may step back with more power flows, as long as one round is left after it.
        at = problem.check(x, settings.max_rounds - checks - 2)
        checks += at.flows
        if at.ok:
            gain = at.value - best_value
            if gain > 0:
                best, best_value = at, at.value
            polish += 1
            if polish > settings.max_polish or gain < settings.polish_gain * gain_unit:
                ended = "verified"
                break
        else:
            if best is not None:
                ended = "overshoot"
                break
            last_failed = at
            if not at.converged:
                ended = "diverged"
                break
            failures += 1
        if not problem.learn(at):
            ended = "stuck"
            break
    return Search(best, last_failed, ended, checks, failures)
