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
   every failure) and the LP is solved again; after :data:`MAX_ROUNDS` failures the set-points are
   moved back towards the best verified point so far in that direction (the baseline at
   worst) by bisection until the AC power flow passes. The
   baseline itself always passes: the limits are the *effective* ones of the validation
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

import highspy
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from market_sim.grid.constraints import (
    BidLayout,
    Caps,
    Violation,
    cap_of,
    effective_limits,
    values,
    violations,
)
from market_sim.grid.flow_summary import VIOLATION_TOL
from market_sim.grid.jacobian import branch_loading_gradient, jacobian
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.grid.sensitivities import element_case_bus
from market_sim.types import Injections, Limits

log = logging.getLogger(__name__)

#: LP + AC-check rounds per direction before the set-points are shrunk towards the baseline.
MAX_ROUNDS = 4
#: Bisection steps of that shrinking (resolution 2**-MAX_SHRINK of the LP step).
MAX_SHRINK = 7
#: A constraint gets an LP row at first when it comes this close to its limit at the baseline
#: or at a corner activation (pu for voltages, percent points for loadings).
SCREEN_MARGIN = {"vmax": 0.02, "vmin": 0.02, "line": 20.0, "trafo": 20.0}
#: At most this many screened constraints per kind (the worst ones; AC checks add the others).
MAX_SCREEN = 300
#: At most this many violated constraints per kind added by one AC check (the worst ones):
#: neighbouring buses of one feeder violate together with nearly equal rows.
MAX_ADD = 8
#: Aim this far inside each limit, times the number of rows the constraint already has.
MARGIN = {"vmax": 2e-4, "vmin": 2e-4, "line": 0.2, "trafo": 0.2}
#: Re-linearisations at an AC-verified point (each one more LP and AC check) while the AC
#: support value still grows by more than POLISH_GAIN (MW / Mvar).
MAX_POLISH = 1
POLISH_GAIN = 1e-3
#: An LP row counts as binding when its activity is this close to its bound.
BINDING_TOL = 1e-7
#: Row entries below this fraction of the row's largest are dropped (sparser LPs; the margins
#: cover far more than the error).
DROP_TOL = 1e-6
#: Sides of the polygon inscribed in each inverter's capability circle (a multiple of 4).
CIRCLE_SIDES = 16
#: Tolerance of the AC check: the same as the validators' (pu for voltages, % for loadings).
CHECK_TOL = VIOLATION_TOL
#: Apparent power may exceed an inverter's rating by this relative amount (rounding only).
RATING_TOL = 1e-9
#: Support points closer than this (MW / Mvar) count as one.
POINT_TOL = 1e-6

#: Reactive injection per unit of the table's own ``q_mvar`` (sgen: generator convention).
_Q_INJ_SIGN = {"sgen": 1.0, "storage": -1.0}
#: Constraint kind of the sensitivity for each limit kind.
_SENS_KIND = {"vmax": "vm", "vmin": "vm", "line": "line", "trafo": "trafo"}

Key = tuple[str, int]


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


# --------------------------------------------------------------------------------------------
# Sensitivities


def interface_and_constraint_sensitivities(
    detail: PowerFlowDetail, keys: list[Key]
) -> tuple[np.ndarray, np.ndarray] | None:
    """d(value)/d(P injection MW) and d(value)/d(Q injection Mvar) at every solver bus.

    Rows: interface P (MW), interface Q (Mvar), then ``keys`` in the orientation of
    :func:`~market_sim.grid.constraints.values` (vmin negated; loading in percent). Why not
    :func:`~market_sim.grid.powerflow.injection_sensitivities`: it returns only the active-power
    columns (the angle rows of the adjoint); the area needs the reactive ones (magnitude rows)
    and the slack bus's power as well. Same adjoint, one LU factorisation for all rows. None on
    the pandapower fallback path (no solver state).
    """
    state = detail.state
    if state is None:
        return None
    model, v = state.model, state.v
    if len(model.ref) != 1:
        return None
    n_state = len(model.pvpq) + len(model.pq)
    grad = np.zeros((n_state, 2 + len(keys)))
    vnorm = v / np.abs(v)
    a_pos, m_pos = model.a_pos, model.m_pos

    # Interface = -(slack bus injection): S_ref = V_r conj(sum_j Y_rj V_j); only neighbours j
    # of the slack carry state variables. Scaled to MW / Mvar (the others stay per unit).
    r = int(model.ref[0])
    row = model.ybus.getrow(r).tocoo()
    j, y = row.col, row.data
    other = j != r
    j, y = j[other], y[other]
    ds_dva = -1j * v[r] * np.conj(y * v[j])
    ds_dvm = v[r] * np.conj(y * vnorm[j])
    for col, part in ((0, np.real), (1, np.imag)):
        a, m = a_pos[j], m_pos[j]
        np.add.at(grad[:, col], a[a >= 0], -model.base_mva * part(ds_dva[a >= 0]))
        np.add.at(grad[:, col], m[m >= 0], -model.base_mva * part(ds_dvm[m >= 0]))

    for k, (kind, pos) in enumerate(keys):
        col = 2 + k
        if kind in ("vmax", "vmin"):
            bus = model.bus_idx[pos]
            mm = m_pos[bus] if bus >= 0 else -1
            if mm >= 0:
                grad[mm, col] = -1.0 if kind == "vmin" else 1.0
            continue
        branch_loading_gradient(model, v, vnorm, kind, pos, grad[:, col])  # type: ignore[arg-type]

    lam = spla.splu(jacobian(model, v), permc_spec="MMD_AT_PLUS_A").solve(grad, trans="T")
    n_bus = len(v)
    d_p = np.zeros((grad.shape[1], n_bus))
    d_q = np.zeros((grad.shape[1], n_bus))
    has_a, has_m = a_pos >= 0, m_pos >= 0
    d_p[:, has_a] = lam[a_pos[has_a], :].T / model.base_mva
    d_q[:, has_m] = lam[m_pos[has_m], :].T / model.base_mva
    # An injection at the slack bus itself flows straight into the transmission network.
    d_p[0, r] = 1.0
    d_q[1, r] = 1.0
    return d_p, d_q


# --------------------------------------------------------------------------------------------
# Decision variables: bid activations and reactive set-points


@dataclass(frozen=True)
class _Der:
    """The LP's columns: bids (0..validated MW) then reactive devices (dq, table convention)."""

    layout: BidLayout
    ub_x: np.ndarray  # validated MW per bid, 0 for bids that cannot act
    q_tables: np.ndarray  # table of each reactive device
    q_positions: np.ndarray
    sn: np.ndarray
    p0: np.ndarray  # baseline p of each reactive device (table convention)
    q0: np.ndarray
    bid_device: np.ndarray  # reactive device of each bid, -1 if none
    w_p_bus: np.ndarray  # solver bus of each active-power bus variable
    w_q_bus: np.ndarray  # solver bus of each reactive-power bus variable
    w_map: sp.csr_matrix  # [n_w, n]: bus injection changes w = w_map z

    @property
    def n_x(self) -> int:
        return len(self.ub_x)

    @property
    def n(self) -> int:
        return len(self.ub_x) + len(self.sn)

    def injections(self, baseline: Injections, z: np.ndarray) -> Injections:
        """Baseline with bids activated by ``z[:n_x]`` MW and reactive set-points moved."""
        inj = self.layout.injections(baseline, z[: self.n_x])
        dq = z[self.n_x :]
        for table in _Q_INJ_SIGN:
            sel = self.q_tables == table
            if sel.any():
                np.add.at(inj.q_mvar[table], self.q_positions[sel], dq[sel])
        return inj

    def within_ratings(self, inj: Injections) -> bool:
        """Every reactive device inside its capability circle (or no worse than at baseline)."""
        for table in _Q_INJ_SIGN:
            sel = self.q_tables == table
            if sel.any():
                pos = self.q_positions[sel]
                s = np.hypot(inj.p_mw[table][pos], inj.q_mvar[table][pos])
                allowed = np.fmax(self.sn[sel], np.hypot(self.p0[sel], self.q0[sel]))
                if np.any(s > allowed * (1 + RATING_TOL) + 1e-9):
                    return False
        return True


def _der(
    dn: DistributionNetwork,
    baseline: Injections,
    bids: pd.DataFrame,
    base: PowerFlowDetail,
    q: bool,
) -> _Der:
    """Columns of the LP: every bid, and (if ``q``) every PV sgen and storage that bids."""
    net = dn.net
    layout = BidLayout.of(dn, bids)
    bus = layout.case_bus(base)
    ub_x = np.where((bus >= 0) & (layout.positions >= 0), np.clip(layout.offered, 0, None), 0.0)
    ub_x = np.nan_to_num(ub_x)
    tables, positions = [], []
    if q and len(bids):
        for table in _Q_INJ_SIGN:
            sel = (layout.tables == table) & (layout.positions >= 0)
            pos = np.unique(layout.positions[sel])
            if not len(pos):
                continue
            df = net[table]
            sn = pd.to_numeric(df["sn_mva"], errors="coerce").to_numpy(float)[pos]
            ok = (
                np.isfinite(sn)
                & (sn > 0)
                & df["in_service"].to_numpy(bool)[pos]
                & (element_case_bus(base, table, pos) >= 0)
            )
            if table == "sgen":
                ok &= dn.pv_mask[pos]
            tables += [table] * int(ok.sum())
            positions += pos[ok].tolist()
    q_tables = np.array(tables, dtype=object)
    q_positions = np.array(positions, dtype=np.int64)
    sn = np.array([float(net[t]["sn_mva"].iloc[p]) for t, p in zip(tables, positions, strict=True)])
    p0 = np.array([baseline.p_mw[t][p] for t, p in zip(tables, positions, strict=True)])
    q0 = np.array([baseline.q_mvar[t][p] for t, p in zip(tables, positions, strict=True)])
    lookup = {(t, int(p)): i for i, (t, p) in enumerate(zip(tables, positions, strict=True))}
    bid_device = np.array(
        [lookup.get((t, int(p)), -1) for t, p in zip(layout.tables, layout.positions, strict=True)],
        dtype=np.int64,
    )
    # Bus variables: the network rows depend on bids and devices only through the injection
    # change at their bus, so they are written on one variable per bus (dense rows over ~half
    # the columns), linked to the bids and devices by sparse equalities.
    active = ub_x > 0
    w_p_bus, p_of = np.unique(bus[active], return_inverse=True)
    qbus = np.array(
        [
            int(element_case_bus(base, t, np.array([p]))[0])
            for t, p in zip(tables, positions, strict=True)
        ],
        dtype=np.int64,
    )
    w_q_bus, q_of = np.unique(qbus, return_inverse=True)
    n_x = len(ub_x)
    rows = np.r_[p_of, len(w_p_bus) + q_of]
    cols = np.r_[np.flatnonzero(active), n_x + np.arange(len(qbus))]
    vals = np.r_[layout.inj_sign[active], [_Q_INJ_SIGN[t] for t in tables]]
    w_map = sp.csr_matrix(
        (vals, (rows, cols)), shape=(len(w_p_bus) + len(w_q_bus), n_x + len(qbus))
    )
    return _Der(
        layout, ub_x, q_tables, q_positions, sn, p0, q0, bid_device, w_p_bus, w_q_bus, w_map
    )


def _columns(der: _Der, d_p: np.ndarray, d_q: np.ndarray) -> np.ndarray:
    """Sensitivity rows (per solver bus) on the LP's bus variables (P buses, then Q buses)."""
    return np.hstack([d_p[:, der.w_p_bus], d_q[:, der.w_q_bus]])


# --------------------------------------------------------------------------------------------
# The linear program


class _Lp:
    """One HiGHS model kept across directions: rows are only added, the objective changes.

    Columns are the bids and reactive set-points ``z`` followed by the bus injection changes
    ``w = w_map z`` (equality rows); network rows and the objective act on ``w``.
    """

    def __init__(self, lower: np.ndarray, upper: np.ndarray, w_map: sp.csr_matrix) -> None:
        self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("presolve", "off")
        self.n_z, self.n_w = len(lower), w_map.shape[0]
        self.solves = 0
        inf = highspy.kHighsInf
        self.h.addVars(self.n_z, lower, upper)
        self.h.addVars(self.n_w, np.full(self.n_w, -inf), np.full(self.n_w, inf))
        link = sp.hstack([w_map, -sp.identity(self.n_w)]).tocsr()
        self._add(link, np.zeros(self.n_w), np.zeros(self.n_w))

    def _add(self, a: sp.csr_matrix, lower: np.ndarray, upper: np.ndarray) -> None:
        a = sp.csr_matrix(a)
        a.eliminate_zeros()
        self.h.addRows(
            a.shape[0],
            np.asarray(lower, float),
            np.asarray(upper, float),
            a.nnz,
            a.indptr[:-1].astype(np.int32),
            a.indices.astype(np.int32),
            a.data.astype(float),
        )

    def add_z_rows(self, a: np.ndarray, rhs: np.ndarray) -> None:
        """Rows ``a z <= rhs`` on the bid / set-point columns."""
        if len(rhs):
            a = sp.hstack([sp.csr_matrix(a), sp.csr_matrix((len(rhs), self.n_w))])
            self._add(a, np.full(len(rhs), -highspy.kHighsInf), rhs)

    def add_w_rows(self, a: np.ndarray, rhs: np.ndarray) -> None:
        """Rows ``a w <= rhs`` on the bus variables (negligible entries dropped)."""
        if len(rhs):
            big = np.abs(a).max(axis=1, keepdims=True)
            a = np.where(np.abs(a) > DROP_TOL * big, a, 0.0)
            a = sp.hstack([sp.csr_matrix((len(rhs), self.n_z)), sp.csr_matrix(a)])
            self._add(a, np.full(len(rhs), -highspy.kHighsInf), rhs)

    def maximise(self, c_w: np.ndarray) -> np.ndarray | None:
        """The ``z`` of argmax c_w w, or None when HiGHS finds no optimum."""
        n = self.n_z + self.n_w
        cost = np.r_[np.zeros(self.n_z), -np.asarray(c_w, float)]
        self.h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)
        self.h.run()
        self.solves += 1
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return np.asarray(self.h.getSolution().col_value, dtype=float)[: self.n_z]


def _circle_rows(der: _Der) -> tuple[np.ndarray, np.ndarray]:
    """Inscribed-polygon rows of every device's capability circle, in LP columns.

    With device p = p0 + sum(delta_sign x) over its bids and q = q0 + dq (table convention):
    cos(phi) p + sin(phi) q <= sn cos(pi / sides). The right-hand side is never below the
    baseline's value, so the baseline stays feasible even for a device at its rating. Only the
    sides whose extent in p meets the device's reachable p range can bind (a PV inverter that
    can only curtail needs four of sixteen), so only those are written.
    """
    n_dev = len(der.sn)
    if not n_dev:
        return np.zeros((0, der.n)), np.zeros(0)
    # Side normals half a step off the axes put polygon corners at (+-sn, 0) and (0, +-sn):
    # full active power at unity power factor (a storage's whole bid) stays reachable.
    phi = 2 * np.pi * (np.arange(CIRCLE_SIDES) + 0.5) / CIRCLE_SIDES
    c, s = np.cos(phi), np.sin(phi)
    half = np.pi / CIRCLE_SIDES
    ends = np.sort(np.c_[np.cos(phi - half), np.cos(phi + half)], axis=1)
    inner = np.cos(half)
    a_rows, rhs = [], []
    for i in range(n_dev):
        bids = np.flatnonzero(der.bid_device == i)
        move = der.layout.delta_sign[bids] * der.ub_x[bids]
        p_lo = (der.p0[i] + np.clip(move, None, 0).sum()) / der.sn[i]
        p_hi = (der.p0[i] + np.clip(move, 0, None).sum()) / der.sn[i]
        sides = np.flatnonzero((ends[:, 1] >= p_lo - 1e-9) & (ends[:, 0] <= p_hi + 1e-9))
        a = np.zeros((len(sides), der.n))
        a[:, bids] = np.outer(c[sides], der.layout.delta_sign[bids])
        a[:, der.n_x + i] = s[sides]
        at_base = c[sides] * der.p0[i] + s[sides] * der.q0[i]
        a_rows.append(a)
        rhs.append(np.maximum(der.sn[i] * inner, at_base) - at_base)
    return np.vstack(a_rows), np.concatenate(rhs)


# --------------------------------------------------------------------------------------------
# Screening, cuts and the AC check


def _near(d: PowerFlowDetail, caps: Caps) -> dict[Key, float]:
    """Constraints within :data:`SCREEN_MARGIN` of their limit at ``d``, with their excess."""
    out: dict[Key, float] = {}
    if not d.result.converged:
        return out
    for kind in ("vmax", "vmin", "line", "trafo"):
        over = np.nan_to_num(values(d, kind) - cap_of(caps, kind), nan=-np.inf)
        for pos in np.flatnonzero(over > -SCREEN_MARGIN[kind]):
            out[(kind, int(pos))] = float(over[pos])
    return out


def _screen(points: list[PowerFlowDetail], caps: Caps) -> list[Key]:
    """The worst :data:`MAX_SCREEN` constraints per kind near their limit at any point."""
    worst: dict[Key, float] = {}
    for d in points:
        for key, over in _near(d, caps).items():
            worst[key] = max(worst.get(key, -np.inf), over)
    keys: list[Key] = []
    for kind in ("vmax", "vmin", "line", "trafo"):
        mine = sorted((k for k in worst if k[0] == kind), key=lambda k: (-worst[k], k[1]))
        keys += mine[:MAX_SCREEN]
    return keys


def _worst(viol: list[Violation]) -> list[Key]:
    """The :data:`MAX_ADD` largest violations of each kind."""
    out: list[Key] = []
    for kind in ("vmax", "vmin", "line", "trafo"):
        mine = sorted((v for v in viol if v.kind == kind), key=lambda v: (-v.overshoot, v.pos))
        out += [(v.kind, v.pos) for v in mine[:MAX_ADD]]
    return out


class _Cuts:
    """Linearised network rows ``a w <= cap - margin - g(d) + a w_d`` in the LP.

    Loading rows are kept from every linearisation point: branch current magnitude is convex in
    the injections to first order, so each linearisation is a valid outer cut (Kelley) and
    keeping them stops oscillation where a flow reverses. A voltage row is replaced by its
    latest linearisation (voltages are nearly linear; the latest point is the most accurate
    one near where the LP is working). A constraint's margin grows with every AC violation of
    it, so that the next LP point lands inside despite second-order errors.
    """

    def __init__(self, caps: Caps, lp: _Lp, base: PowerFlowDetail) -> None:
        self.caps = caps
        self.lp = lp
        self.base = base
        self.failures: dict[Key, int] = {}
        self.voltage_row: dict[Key, int] = {}
        self.row_key: dict[int, Key] = {}

    def add(
        self,
        d: PowerFlowDetail,
        w_d: np.ndarray,
        keys: list[Key],
        cols: np.ndarray,
        violated: bool,
    ) -> None:
        """Rows of ``keys`` (sensitivities ``cols`` on the bus variables) linearised at ``d``.

        ``w_d`` are the bus injection changes of ``d`` relative to the baseline; ``violated``
        says that ``d`` violated these constraints (their margins grow).
        """
        if not keys:
            return
        rhs = np.zeros(len(keys))
        cols = np.array(cols, dtype=float)
        first = self.lp.h.getNumRow()
        w_norm2 = float(w_d @ w_d)
        inf = highspy.kHighsInf
        for r, key in enumerate(keys):
            kind, pos = key
            if violated:
                self.failures[key] = self.failures.get(key, 0) + 1
            scale = 1 + self.failures.get(key, 0)
            g = float(values(d, kind)[pos])
            cap = float(cap_of(self.caps, kind)[pos])
            if kind in ("vmax", "vmin") and w_norm2 > 0:
                g0 = float(values(self.base, kind)[pos])
                cols[r] += ((g - g0) - float(cols[r] @ w_d)) * w_d / w_norm2
            rhs[r] = cap - MARGIN[kind] * scale - g + float(cols[r] @ w_d)
            self.row_key[first + r] = key
            if kind in ("vmax", "vmin"):
                old = self.voltage_row.get(key)
                if old is not None:
                    self.lp.h.changeRowBounds(old, -inf, inf)
                self.voltage_row[key] = first + r
        # The baseline (w = 0) is AC-feasible by construction of the effective limits; a row
        # that excludes it is a linearisation artefact and is relaxed to pass through it.
        self.lp.add_w_rows(cols, np.maximum(rhs, 0.0))

    def binding(self) -> list[Key]:
        """Constraints whose rows are tight at the last LP optimum (worst per kind first)."""
        h = self.lp.h
        value = np.asarray(h.getSolution().row_value, dtype=float)
        upper = np.asarray(h.getLp().row_upper_, dtype=float)
        tight = [
            self.row_key[r]
            for r in sorted(self.row_key)
            if upper[r] < highspy.kHighsInf and value[r] >= upper[r] - BINDING_TOL
        ]
        out: list[Key] = []
        for kind in ("vmax", "vmin", "line", "trafo"):
            out += list(dict.fromkeys(k for k in tight if k[0] == kind))[:MAX_ADD]
        return out


def _ac(
    dn: DistributionNetwork,
    der: _Der,
    baseline: Injections,
    z: np.ndarray,
    limits: Limits,
    warm: PowerFlowDetail,
) -> tuple[Injections, PowerFlowDetail]:
    inj = der.injections(baseline, z)
    return inj, run_power_flow_detailed(dn, inj, limits, write=False, warm_start=warm)


def _passes(
    dn: DistributionNetwork, der: _Der, inj: Injections, d: PowerFlowDetail, caps: Caps
) -> bool:
    """AC-verified: converged, within the effective limits and every inverter's rating."""
    return d.result.converged and not violations(dn, d, caps) and der.within_ratings(inj)


# --------------------------------------------------------------------------------------------
# Public entry point


def _hull(points: np.ndarray) -> list[int]:
    """Indices of the convex hull of 2-D ``points``, counter-clockwise (Andrew's monotone chain).

    Written out rather than qhull's: it copes with the degenerate areas (a single point, a
    segment when there is no reactive flexibility) without special cases.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i, 0], points[i, 1]))
    if len(order) <= 2:
        return order

    def cross(o: int, a: int, b: int) -> float:
        return float(
            (points[a, 0] - points[o, 0]) * (points[b, 1] - points[o, 1])
            - (points[a, 1] - points[o, 1]) * (points[b, 0] - points[o, 0])
        )

    lower: list[int] = []
    for i in order:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], i) <= 1e-12:
            lower.pop()
        lower.append(i)
    upper: list[int] = []
    for i in reversed(order):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], i) <= 1e-12:
            upper.pop()
        upper.append(i)
    hull = lower[:-1] + upper[:-1]
    return hull if len(hull) >= 2 else order[:1]


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
    bids = bids.reset_index(drop=True)
    n_bids = len(bids)
    base = run_power_flow_detailed(dn, baseline, limits, write=False)
    n_pf = 1
    nan = float("nan")
    if not base.result.converged:
        return _base_only(
            nan, nan, baseline, n_bids, "baseline power flow did not converge", ac_power_flows=1
        )
    base_p, base_q = base.result.interface_p_mw, base.result.interface_q_mvar
    caps = effective_limits(dn, base, limits)
    der = _der(dn, baseline, bids, base, reactive)
    common: dict[str, object] = {"reactive": reactive, "ac_power_flows": n_pf}
    if der.n == 0 or not np.any(der.ub_x > 0) and not len(der.sn):
        out = _base_only(base_p, base_q, baseline, n_bids, "no flexibility offered", **common)
        return out
    if base.state is None:
        return _base_only(
            base_p, base_q, baseline, n_bids, "no sensitivities (pandapower fallback)", **common
        )

    # Bounds: bids 0..validated MW; reactive set-points within the rating (circle rows below).
    lower = np.r_[np.zeros(der.n_x), -der.sn - der.q0]
    upper = np.r_[der.ub_x, der.sn - der.q0]
    lp = _Lp(lower, upper, der.w_map)
    lp.add_z_rows(*_circle_rows(der))

    # Screening: the baseline plus corner activations (all up / all down, all reactive
    # capability either way, each one AC power flow).
    up = der.layout.inj_sign > 0
    corners = []
    for px in (np.zeros(der.n_x), np.where(up, der.ub_x, 0.0), np.where(~up, der.ub_x, 0.0)):
        for qs in (0.0, 1.0, -1.0) if len(der.sn) else (0.0,):
            if not px.any() and qs == 0.0:
                continue
            qq = qs * np.sqrt(np.clip(der.sn**2 - der.p0**2, 0.0, None)) - der.q0
            _, d = _ac(dn, der, baseline, np.r_[px, qq], limits, base)
            n_pf += 1
            corners.append(d)
    keys = _screen([base, *corners], caps)
    sens = interface_and_constraint_sensitivities(base, keys)
    if sens is None:
        return _base_only(base_p, base_q, baseline, n_bids, "no sensitivities", **common)
    cols = _columns(der, *sens)
    obj_p, obj_q = cols[0], cols[1]
    cuts = _Cuts(caps, lp, base)
    cuts.add(base, np.zeros(der.w_map.shape[0]), keys, cols[2:], violated=False)
    known = set(keys)

    # Support points: (p, q, z, injections, theta, LP rounds, shrink factor).
    found: list[tuple[float, float, np.ndarray, Injections, float, int, float]] = []
    for k in range(directions):
        theta = 2 * np.pi * k / directions
        c = np.cos(theta) * obj_p + np.sin(theta) * obj_q
        point, value = None, -np.inf  # best verified (z, inj, detail, shrink) and its support
        rounds = fails = polish = 0
        last_z = None
        while fails < MAX_ROUNDS:
            z = lp.maximise(c)
            rounds += 1
            if z is None:
                break
            z = np.clip(z, lower, upper)
            inj, d = _ac(dn, der, baseline, z, limits, base)
            n_pf += 1
            if _passes(dn, der, inj, d, caps):
                v = (
                    np.cos(theta) * d.result.interface_p_mw
                    + np.sin(theta) * d.result.interface_q_mvar
                )
                if v <= value + POLISH_GAIN:
                    break
                point, value = (z, inj, d, 1.0), v
                # Polish: re-linearise what binds at the verified point, where the model is
                # accurate, and try once more (kept only if it verifies and gains).
                near = cuts.binding()
                if polish >= MAX_POLISH or not near:
                    break
                polish += 1
                sens_d = interface_and_constraint_sensitivities(d, near)
                if sens_d is None:
                    break
                known |= set(near)
                cuts.add(d, der.w_map @ z, near, _columns(der, *sens_d)[2:], violated=False)
                continue
            if point is not None:
                break  # a polishing step overshot: keep the verified point
            last_z = z
            if not d.result.converged:
                break  # shrink from here
            fails += 1
            new = _worst(violations(dn, d, caps))
            sens_d = interface_and_constraint_sensitivities(d, new)
            if not new or sens_d is None:
                break
            known |= set(new)
            cuts.add(d, der.w_map @ z, new, _columns(der, *sens_d)[2:], violated=True)
        if point is None and last_z is not None:
            # Bisect between the LP point and the best verified point so far in this
            # direction (the baseline at worst, which always passes): the step back keeps
            # what the LP gained over the area found so far.
            score = [np.cos(theta) * f[0] + np.sin(theta) * f[1] for f in found]
            if found and max(score) > np.cos(theta) * base_p + np.sin(theta) * base_q:
                anchor = found[int(np.argmax(score))][2]
            else:
                anchor = np.zeros(der.n)
            lo, hi = 0.0, 1.0
            for _ in range(MAX_SHRINK):
                t = 0.5 * (lo + hi)
                zt = anchor + t * (last_z - anchor)
                inj, d = _ac(dn, der, baseline, zt, limits, base)
                n_pf += 1
                if _passes(dn, der, inj, d, caps):
                    lo, point = t, (zt, inj, d, t)
                else:
                    hi = t
        if point is None:
            log.debug("%s: no verified support point at theta=%.3f", dn.code, theta)
            continue
        z, inj, d, shrink = point
        found.append(
            (d.result.interface_p_mw, d.result.interface_q_mvar, z, inj, theta, rounds, shrink)
        )

    points = np.array([[base_p, base_q]] + [[f[0], f[1]] for f in found])
    zs = [np.zeros(der.n)] + [f[2] for f in found]
    injs = [baseline.copy()] + [f[3] for f in found]
    # Drop duplicates before the hull (keep the first: the baseline, then by angle).
    keep: list[int] = []
    for i in range(len(points)):
        if all(np.hypot(*(points[i] - points[j])) > POINT_TOL for j in keep):
            keep.append(i)
    hull = [keep[i] for i in _hull(points[keep])]
    vertices = pd.DataFrame({"p_mw": points[hull, 0], "q_mvar": points[hull, 1]})
    support = pd.DataFrame(
        {
            "theta": [f[4] for f in found],
            "p_mw": [f[0] for f in found],
            "q_mvar": [f[1] for f in found],
            "lp_rounds": [f[5] for f in found],
            "shrink": [f[6] for f in found],
        }
    )
    elapsed = time.perf_counter() - t0
    area = FlexibilityArea(
        vertices=vertices,
        base_p_mw=base_p,
        base_q_mvar=base_q,
        p_min_mw=float(vertices["p_mw"].min()),
        p_max_mw=float(vertices["p_mw"].max()),
        q_min_mvar=float(vertices["q_mvar"].min()),
        q_max_mvar=float(vertices["q_mvar"].max()),
        verified=bool(found),
        lp_solves=lp.solves,
        ac_power_flows=n_pf,
        operating_points=tuple(injs[i] for i in hull),
        bid_mw=np.array([zs[i][: der.n_x] for i in hull]).reshape(len(hull), der.n_x),
        support=support,
        reactive=reactive,
        compute_s=elapsed,
        message="" if found else "no support point passed its AC check",
    )
    log.debug(
        "%s: flexibility area P %.3f..%.3f MW, Q %.3f..%.3f Mvar, %d vertices, "
        "%d LPs, %d power flows, %d constraints, %.2f s",
        dn.code,
        area.p_min_mw,
        area.p_max_mw,
        area.q_min_mvar,
        area.q_max_mvar,
        len(vertices),
        lp.solves,
        n_pf,
        len(known),
        elapsed,
    )
    return area


__all__ = ["FlexibilityArea", "flexibility_area", "interface_and_constraint_sensitivities"]
