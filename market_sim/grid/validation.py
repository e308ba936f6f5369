"""Validation of flexibility bids by a DSO: one entry point, several methods.

The DSO answers one question per bid: how many MW of it may be activated without driving the
distribution network out of its limits? Up and down bids are validated separately because a
TSO never activates both directions at once. :func:`validate` dispatches by name, through
the registry :data:`market_sim.registry.VALIDATION_METHODS`, to

* ``iterative_pf`` (:mod:`.iterative_pf`): rule-based iterative power flow, cut and re-check;
* ``linear_opf`` (:mod:`.linear_opf`): sensitivity LP with AC verification, the fast path;
* ``ac_opf`` (:mod:`.ac_opf`): pandapower's AC OPF, the slow reference on small networks;

with a fairness policy (:mod:`.fairness`: ``max_volume`` or ``equitable``) and optionally the
DSO's own HV/MV tap changers (:mod:`.oltc`). Every method sees the same effective limits
(:mod:`.constraints`) and the result reports per period (:class:`ValidationResult` and its
:class:`DirectionStats`): volume offered and validated, binding constraints, AC power flows
run, LP solves, compute time and Jain's index of the accepted shares.

What a validated quantity promises: any activation inside the box [0, validated] of a
direction's bids (any subset, any partial quantity, DER that do not deliver) keeps the network
within the effective limits, not only the full validated set (the TSO may dispatch any part).
The linear model enforces it exactly: every linearised row is taken at its worst case over the
box (:func:`~.linearised.worst_case`); the AC power flow checks the full set and the critical
vertices of the rows near their limit (:func:`~.linearised.box_vertices`), and a failing vertex
is cut like a failing full set. Tolerance: at the vertices checked, the AC limits hold to
``VIOLATION_TOL`` (1e-6 pu, 1e-6 % loading); between them the power flow's curvature may put
the AC worst case at a vertex not checked (tests/test_box_validation.py measures random
subsets, partial activations and single-bid parts on the quickstart's networks). Up and down
are validated separately: a box mixing both directions is not checked here.

Pre-existing violations (already present in the baseline, before any bid): the baseline level
becomes the limit of that element, i.e. bids may not make it worse, and bids that would are
cut. The DSO never validates something unsafe: if the baseline power flow fails, everything
is rejected; if a direction does not reach a feasible point within its budget, every bid of
that direction is rejected (validated_mw = 0), the other direction keeps its result, and
``converged`` is False.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from market_sim.grid.constraints import (
    MIN_MW,
    BidLayout,
    Caps,
    DirectionOutcome,
    effective_limits,
    element_positions,
    within,
)
from market_sim.grid.fairness import check_fairness, jain_index, min_share
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.oltc import tap_candidates
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.registry import VALIDATION_METHODS
from market_sim.types import (
    DIRECTIONS,
    DirectionStats,
    Injections,
    Limits,
    TapCandidate,
    ValidationResult,
)

log = logging.getLogger(__name__)

#: (dn, baseline, base power flow, bids of one direction, caps, limits, fairness, **options,
#: layout=their BidLayout)
DirectionValidator = Callable[..., DirectionOutcome]

#: Bids of one direction (mask over the bid book) and what validating them produced.
Outcomes = dict[str, tuple[np.ndarray, DirectionOutcome]]


@dataclass(frozen=True)
class _Columns:
    """The bid book's columns as arrays, read once per :func:`validate` (an empty book may
    come without columns), with each bid's position in its element table (-1: unknown)."""

    bid_id: np.ndarray
    direction: np.ndarray
    element: np.ndarray
    mw: np.ndarray
    positions: np.ndarray

    @classmethod
    def of(cls, dn: DistributionNetwork, bids: pd.DataFrame) -> _Columns:
        element = _column(bids, "element", object)
        labels = _column(bids, "element_index", None)
        return cls(
            _column(bids, "bid_id", np.int64),
            _column(bids, "direction", object),
            element,
            _column(bids, "mw", float),
            element_positions(dn, element, labels),
        )


@dataclass(frozen=True)
class _Book:
    """The active bids (known element, positive quantity) of one direction: their mask over
    the bid book, their rows and where they act, found once per :func:`validate` (with OLTC
    every tap candidate validates the same bids)."""

    sel: np.ndarray
    rows: pd.DataFrame
    layout: BidLayout


@dataclass(frozen=True)
class _Problem:
    """Everything a validation method is called with, fixed for one call of :func:`validate`."""

    dn: DistributionNetwork
    books: dict[str, _Book]  # per direction that has active bids, in DIRECTIONS order
    caps: Caps
    limits: Limits
    solver: DirectionValidator
    fairness: str
    options: dict[str, Any]


@dataclass(frozen=True)
class _Search:
    """The best tap setting found, its outcomes, and the work it took to find it."""

    taps: np.ndarray | None
    outcomes: Outcomes
    iterations: int
    lp_solves: int = 0
    tried: tuple[TapCandidate, ...] = ()


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

    ``method``: a name in :data:`market_sim.registry.VALIDATION_METHODS`; ``fairness``:
    ``max_volume`` or ``equitable``; ``oltc``: let the DSO pick its HV/MV tap positions
    (:mod:`.oltc`) for the largest total validated volume; the chosen taps are in
    ``trafo_tap_pos``. ``options`` go to the method (``max_iter`` for iterative_pf,
    ``max_rounds`` for linear_opf / ac_opf) except ``oltc_reach`` (tap steps tried each side,
    default 2). Unknown names raise
    ValueError; everything else is reported in the result, never raised.
    """
    solver = _method(method)
    check_fairness(fairness)
    reach = int(options.pop("oltc_reach", 2))
    t0 = time.perf_counter()
    base = run_power_flow_detailed(dn, baseline, limits, write=False)
    columns = _Columns.of(dn, bids)
    if not base.converged:
        log.debug("%s: baseline power flow did not converge, rejecting all bids", dn.code)
        why = "baseline power flow did not converge"
        reasons = np.array([f"rejected: {why}"] * len(bids), dtype=object)
        search = _Search(None, {}, 1)
        return _result(columns, reasons, search, method, fairness, t0, base.runpp_reason, why)
    taps0 = np.asarray(baseline.trafo_tap_pos, dtype=float)
    if len(bids) == 0:
        empty = np.zeros(0, dtype=object)
        search = _Search(taps0, {}, 1)
        return _result(columns, empty, search, method, fairness, t0, base.runpp_reason)
    known = columns.positions >= 0  # the element exists in the network
    mw = columns.mw
    caps = effective_limits(dn, base, limits)
    books = _books(bids, columns, known & np.isfinite(mw) & (mw > MIN_MW))
    problem = _Problem(dn, books, caps, limits, solver, fairness, options)
    candidates = tap_candidates(dn, taps0, reach) if oltc else None
    search = _search_taps(problem, baseline, base, taps0, candidates)
    for direction, (_, res) in search.outcomes.items():
        if not res.converged:
            log.debug("%s: %s bids rejected: %s (%s)", dn.code, direction, res.message, method)
    reasons = _reasons(known, search.outcomes)
    return _result(columns, reasons, search, method, fairness, t0, base.runpp_reason)


def validate_iterative(
    dn: DistributionNetwork,
    baseline: Injections,
    bids: pd.DataFrame,
    limits: Limits,
    max_iter: int = 30,
) -> ValidationResult:
    """Rule-based iterative power-flow validation (``validate(method="iterative_pf")``)."""
    return validate(dn, baseline, bids, limits, method="iterative_pf", max_iter=max_iter)


def _method(name: str) -> DirectionValidator:
    """The registered method of ``name``; ValueError naming what is allowed otherwise."""
    return VALIDATION_METHODS.load(name)


def _books(bids: pd.DataFrame, columns: _Columns, active: np.ndarray) -> dict[str, _Book]:
    """The :class:`_Book` of the ``active`` bids of each direction that has any."""
    c = columns
    books = {}
    for direction in DIRECTIONS:
        sel = active & (c.direction == direction)
        if sel.any():
            layout = BidLayout.at(c.element[sel], c.positions[sel], c.direction[sel], c.mw[sel])
            books[direction] = _Book(sel, bids[sel], layout)
    return books


# --------------------------------------------------------------------------------------------
# Tap settings


def _search_taps(
    problem: _Problem,
    baseline: Injections,
    base: PowerFlowDetail,
    taps0: np.ndarray,
    candidates: list[np.ndarray] | None,
) -> _Search:
    """Validate at the baseline taps, or with OLTC at every candidate, and keep the best.

    With OLTC every candidate, the unchanged taps included, gets its own power flow (which
    counts in the iterations) and must keep the network safe by itself before its bids are
    validated; the first candidate with the largest total validated volume wins. The search
    stops at a candidate that validates every offered MW: a later one would have to validate
    more than 1e-9 MW above it, more than is offered (every method validates at most each
    bid's offer; :data:`_FULL_TOLERANCE_MW` covers the rounding of the two sums). On the
    quickstart that skips 43 % of the candidates' validations and changes no choice.
    """
    if candidates is None:
        outcomes = _validate_at(problem, baseline, base)
        return _Search(taps0, outcomes, 1 + _ac_iterations(outcomes), _lp_solves(outcomes))
    offered = sum(float(book.layout.offered.sum()) for book in problem.books.values())
    best, best_volume, iterations, lp_solves, tried = None, -1.0, 1, 0, []
    for taps in candidates:
        if best_volume >= offered - _FULL_TOLERANCE_MW:
            break
        inj = _with_taps(baseline, taps)
        d = run_power_flow_detailed(problem.dn, inj, problem.limits, write=False, warm_start=base)
        iterations += 1
        if not within(problem.dn, d, problem.caps):
            tried.append(TapCandidate(tuple(taps.tolist()), None))
            continue
        outcomes = _validate_at(problem, inj, d)
        iterations += _ac_iterations(outcomes)
        lp_solves += _lp_solves(outcomes)
        volume = sum(float(o.x.sum()) for _, o in outcomes.values())
        tried.append(TapCandidate(tuple(taps.tolist()), volume))
        if volume > best_volume + 1e-9:
            best, best_volume = (taps, outcomes), volume
    taps, outcomes = best
    return _Search(taps, outcomes, iterations, lp_solves, tuple(tried))


#: How far below the offered total (MW) a candidate's validated total still counts as all of
#: it: below the 1e-9 MW a later candidate must win by, above the rounding of summing a few
#: thousand offers in two orders (about 1e-16 of the total per bid).
_FULL_TOLERANCE_MW = 5e-10


def _with_taps(baseline: Injections, taps: np.ndarray) -> Injections:
    out = baseline.copy()
    out.trafo_tap_pos = np.asarray(taps, dtype=float).copy()
    return out


def _validate_at(problem: _Problem, baseline: Injections, base: PowerFlowDetail) -> Outcomes:
    """Run the method on each direction's active bids around one baseline power flow."""
    p = problem
    out = {}
    for direction, book in p.books.items():
        args = (p.dn, baseline, base, book.rows, p.caps, p.limits, p.fairness)
        res = p.solver(*args, layout=book.layout, **p.options)
        out[direction] = (book.sel, res)
    return out


def _ac_iterations(outcomes: Outcomes) -> int:
    return sum(o.ac_iterations for _, o in outcomes.values())


def _lp_solves(outcomes: Outcomes) -> int:
    return sum(o.lp_solves for _, o in outcomes.values())


# --------------------------------------------------------------------------------------------
# The result


def _result(
    columns: _Columns,
    reasons: np.ndarray,
    search: _Search,
    method: str,
    fairness: str,
    t0: float,
    runpp_reason: str,
    failure: str = "",
) -> ValidationResult:
    """The :class:`ValidationResult` of the chosen outcomes (``failure``: nothing validated;
    ``runpp_reason``: the baseline power flow's, see :class:`PowerFlowDetail`)."""
    validated = np.zeros(len(columns.mw))
    for sel, res in search.outcomes.values():
        validated[sel] = res.x
    binding: list[str] = []
    for _, res in search.outcomes.values():
        binding += [b for b in res.binding if b not in binding]
    messages = [
        f"{direction} bids rejected: {res.message}"
        for direction, (_, res) in search.outcomes.items()
        if not res.converged
    ]
    converged = not failure and not messages
    table = pd.DataFrame(
        {
            "bid_id": columns.bid_id,
            "validated_mw": validated,
            # An object array of Python str already (see _reasons): a numpy str copy of it
            # cost twice the rest of the table.
            "reason": reasons,
        }
    )
    return ValidationResult(
        table,
        search.iterations,
        converged,
        tuple(binding),
        failure or "; ".join(messages),
        search.taps,
        directions=_direction_stats(columns, validated, search.outcomes, converged),
        lp_solves=search.lp_solves,
        time_s=time.perf_counter() - t0,
        method=method,
        fairness=fairness,
        tap_candidates=search.tried,
        runpp_reason=runpp_reason,
    )


def _reasons(known: np.ndarray, outcomes: Outcomes) -> np.ndarray:
    """Per bid: the method's reason, "ok" for bids it did not see, or the unknown element
    (an object array of Python str, the result table's column)."""
    reasons = np.full(len(known), "ok", dtype=object)
    reasons[~known] = "rejected: unknown element"
    for sel, res in outcomes.values():
        reasons[sel] = res.reasons
    return reasons


def _direction_stats(
    columns: _Columns, validated: np.ndarray, outcomes: Outcomes, converged: bool
) -> dict[str, DirectionStats]:
    """Volumes and fairness per direction; a direction without bids takes ``converged``."""
    mw, directions = columns.mw, columns.direction
    stats = {}
    for direction in DIRECTIONS:
        sel = directions == direction
        res = outcomes[direction][1] if direction in outcomes else None
        stats[direction] = DirectionStats(
            offered_mw=float(np.nansum(mw[sel])),
            validated_mw=float(validated[sel].sum()),
            jain=jain_index(validated[sel], mw[sel]),
            min_share=min_share(validated[sel], mw[sel]),
            converged=bool(res.converged) if res else converged,
            lp_solves=int(res.lp_solves) if res else 0,
            binding=tuple(res.binding) if res else (),
        )
    return stats


def _column(bids: pd.DataFrame, name: str, dtype: Any) -> np.ndarray:
    """A column of the bid book; an empty book may come without columns (``dtype`` None:
    the column's own)."""
    if not len(bids):
        return np.zeros(0, dtype=dtype or object)
    return bids[name].to_numpy(dtype=dtype)
