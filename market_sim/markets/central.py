"""TSO-managed clearing: one integrated problem over transmission and every DSO network.

In the TSO-managed model (the paper's Fig. 1, step 2a) the TSO validates and dispatches at
once: its balancing DC-OPF carries, for every DSO, the distribution constraints that can bind,
linearised at the state the DSO reported (voltage and loading sensitivities from the power-flow
Jacobian). The TSO then checks the dispatch with an AC power flow of each reported state, adds
any constraint found violated and clears again. The problem grows with the distribution
networks: the number of rows and the solve time are recorded every period.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from market_sim.columns import numbers, positions, text
from market_sim.grid.constraints import BidLayout, Caps, effective_limits
from market_sim.grid.linear_opf import network_highs, solve_lp
from market_sim.grid.linearised import (
    TSO_MANAGED,
    Checked,
    Key,
    Vertex,
    ac_check,
    box_check,
    box_vertices,
    constraint_generation,
    rows,
    screen,
    worst_case,
    worst_vertex,
)
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.types import UP, Injections, Limits, empty_bids


@dataclass
class DistributionModel:
    """One DSO network as the TSO sees it this period: reported state and its bids."""

    name: str
    network: DistributionNetwork
    state: Injections
    bids: pd.DataFrame  # this DSO's bids, in the order of their offer columns
    limits: Limits
    point: PowerFlowDetail
    caps: Caps
    keys: list[Key]
    #: AC checks that failed on carried constraints only (each grows this DSO's margin).
    stuck: int = 0
    #: The factorisation at the reported state, kept for the next clearing's rows.
    reuse: dict = field(default_factory=dict, repr=False)
    #: Rows linearised where an AC check failed (a part of a dispatch), kept like the DSOs'
    #: loading cuts: a flow that the bids reverse is missed by a linearisation at the state.
    cuts: list[tuple[np.ndarray, np.ndarray, list[Key]]] = field(default_factory=list, repr=False)
    #: Where the bids act (fixed with the bids; every linearisation and AC check uses it).
    layout: BidLayout | None = field(default=None, repr=False)
    #: The last rows at the reported state, with the keys and margin failures they are for:
    #: :meth:`validated` asks for the rows the clearing ended with, at the same state.
    _at_state: tuple[tuple, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    #: The last :meth:`rows`, with what they were built from (keys, margin failures, cuts):
    #: the clearing and :meth:`validated` ask for the same rows.
    _rows: tuple[tuple, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def at(
        cls,
        name: str,
        dn: DistributionNetwork,
        state: Injections,
        bids: pd.DataFrame,
        limits: Limits,
        point: PowerFlowDetail | None = None,
        layout: BidLayout | None = None,
    ) -> DistributionModel:
        """Linearisation point and screened constraints: near their limit at the reported
        state, or pushed past it by all up or all down bids activated together. ``bids``
        numbered from 0 are kept as they are (a model only reads them), others renumbered.
        ``point``: the power flow of ``state``, ``layout``: ``BidLayout.of(dn, bids)``, where
        the caller has them (else solved / read here). Of ``point`` only whether it converged
        is read: its summary (``result``) counts violations, 24 us a point on the quickstart."""
        if point is None:
            point = run_power_flow_detailed(dn, state, limits, write=False)
        caps = effective_limits(dn, point, limits) if point.converged else None
        if not bids.index.equals(pd.RangeIndex(len(bids))):
            bids = bids.reset_index(drop=True)
        layout = BidLayout.of(dn, bids) if layout is None else layout
        model = cls(name, dn, state, bids, limits, point, caps, [], layout=layout)
        if caps is None or not len(bids):
            return model
        points, up = [point], layout.inj_sign > 0
        for direction in (up, ~up):
            x = np.where(direction, layout.offered, 0.0)
            points.append(run_power_flow_detailed(dn, layout.injections(state, x), limits,
                                                  write=False))  # fmt: skip
        model.keys = screen(dn, caps, points, TSO_MANAGED)
        return model

    def row_keys(self) -> list[Key]:
        """The constraints :meth:`rows` linearises, one row each (none without a state): those
        at the reported state, then those learnt at failing parts of a dispatch."""
        if self.point.state is None:
            return []
        return list(self.keys) + [key for _, _, keys in self.cuts for key in keys]

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``A x <= b`` over this DSO's bids (MW), linearised at the reported state, each row
        the worst case over the box [0, x] (:func:`~market_sim.grid.linearised.worst_case`):
        any part of the dispatch, a DER that does not deliver included, stays within it.

        The right-hand sides are at least 0: no dispatch (x = 0) is the reported forecast
        point, within the limits by construction of the caps, so a row below 0 is the margin.
        """
        memo = (tuple(self.keys), self.stuck, len(self.cuts))
        if self._rows is None or self._rows[0] != memo:
            self._rows = (memo, *self._stacked_rows())
        return self._rows[1], self._rows[2]

    def _stacked_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`rows` built: the worst case of the rows at the state, then the cuts."""
        a, b = np.zeros((0, len(self.bids))), np.zeros(0)
        if not self.row_keys():
            return a, b
        if self.keys:
            a, b = self._rows_at_state()
        a_all = np.vstack([worst_case(a), *(c for c, _, _ in self.cuts)])
        return a_all, np.concatenate([np.maximum(b, 0.0), *(d for _, d, _ in self.cuts)])

    def _rows_at_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows of :attr:`keys` at the reported state (margin grown by :attr:`stuck`),
        linearised again only when the keys or the margin changed (the same inputs give the
        same rows: the point, caps and bids of this model are fixed, the factorisation too)."""
        memo = (tuple(self.keys), self.stuck)
        if self._at_state is None or self._at_state[0] != memo:
            scale = TSO_MANAGED.margin_scale(self.stuck)
            a, b = rows(self.point, self.keys, self.layout, self.caps, TSO_MANAGED, scale,
                        reuse=self.reuse)  # fmt: skip
            self._at_state = (memo, a, b)
        return self._at_state[1], self._at_state[2]

    def learn_at(self, where: Vertex, keys: list[Key]) -> None:
        """Rows of ``keys`` linearised at a part of a dispatch that failed its AC check."""
        if not keys or where.detail.state is None:
            return
        scale = TSO_MANAGED.margin_scale(self.stuck)
        a, b = rows(where.detail, keys, self.layout, self.caps, TSO_MANAGED, scale, x_at=where.x)
        self.cuts.append((worst_case(a), np.maximum(b, 0.0), list(keys)))

    def violated(self, mw: np.ndarray) -> tuple[list[Key], Vertex | None]:
        """Constraints an AC power flow of the reported state with ``mw`` dispatched, or with
        a critical vertex of the box [0, mw] (each direction's full set included), violates,
        and the part that failed worst (None when none converged)."""
        layout = self.layout
        d, viol = ac_check(self.network, layout.injections(self.state, mw), self.limits, self.caps)
        if viol is None:
            return [("nonconvergence", -1)], None
        worst = Vertex(mw, d, viol)
        if not viol:
            vertices = box_vertices(self.network, self.point, d, layout, mw, self.caps)[1:]
            checked = box_check(
                self.network, layout, self.state, self.limits, self.caps, vertices, d
            )
            if any(v.violations is None for v in checked):
                return [("nonconvergence", -1)], None
            viol = [v for c in checked for v in c.violations]
            worst = worst_vertex(checked) if viol else worst
        return list(dict.fromkeys((v.kind, v.pos) for v in viol)), worst

    def validated(self, dispatched: np.ndarray) -> np.ndarray:
        """Per bid, what this DSO's rows in the integrated problem validate: per direction,
        the largest volume within them (the DSOs' max-volume LP) that contains ``dispatched``.

        What the TSO dispatched is one point of the rows; "validated" means the same in every
        model: the volume the validator's constraints would allow, of which any part may be
        activated. The LP is over the rows the clearing ended with (not AC-checked again).
        Where every free MW is within the rows (more than a quarter of the LPs on the
        quickstart; rows without a coefficient on the direction's bids among them), that
        direction's LP is not solved: its unique optimum is every free MW, which HiGHS returns
        exactly (each column nonbasic at its upper bound, the slack basis feasible).
        """
        a, b = self.rows()
        out = dispatched.astype(float).copy()
        offered, up = self.layout.offered, self.layout.inj_sign > 0
        highs = network_highs(self.network)
        for sel in (up, ~up):
            if not sel.any():
                continue
            free = np.maximum(offered[sel] - dispatched[sel], 0.0)
            mine = a[:, sel]
            rhs = np.maximum(b - mine @ dispatched[sel], 0.0)
            if (mine @ free <= rhs).all():
                out[sel] += free
                continue
            more, _ = solve_lp(highs, mine, rhs, free, "max_volume")
            out[sel] += 0.0 if more is None else more
        return np.minimum(out, offered)


def block_rows(models: list[DistributionModel]) -> tuple[sp.csr_matrix, np.ndarray]:
    """The DSOs' rows side by side: one block per DSO over its own bids' columns.

    Each block is a DSO's dense sensitivity rows, of which the nonzero entries are written
    into the CSR arrays, row by row in column order: scipy's ``block_diag`` took about 2 s per
    clearing on the 10k-bus grid, whose rows are [up to 1,800 keys x 13k bids]. About half of a
    block is zero (a worst case keeps a row's positive sensitivities only), and the solver and
    the recorder drop the zeros anyway: without them the clearing adds its rows without a copy
    (:meth:`~.persistent.LoadedModel.extra_rows`).
    """
    blocks = [m.rows() for m in models]
    widths = [len(m.bids) for m in models]
    starts = np.r_[0, np.cumsum(widths)]
    nonzero = [a != 0 for a, _ in blocks]
    kept = [np.flatnonzero(nz) for nz in nonzero]  # row by row, in column order
    nnz = sum(len(k) for k in kept)
    index = np.int32 if max(nnz, int(starts[-1])) < np.iinfo(np.int32).max else np.int64
    data, indices, indptr, done = [], [], [np.zeros(1, index)], 0
    for (a, _), nz, k, col, width in zip(blocks, nonzero, kept, starts[:-1], widths, strict=True):
        data.append(a.ravel().take(k))
        indices.append(np.tile(np.arange(col, col + width, dtype=index), a.shape[0]).take(k))
        indptr.append(done + np.cumsum(nz.sum(axis=1), dtype=index))
        done += len(k)
    shape = (sum(len(b) for _, b in blocks), int(starts[-1]))
    arrays = (_joined(data, float), _joined(indices, index), np.concatenate(indptr))
    return sp.csr_matrix(arrays, shape=shape), _joined([b for _, b in blocks], float)


#: The pandapower table a constraint kind limits.
KIND_ELEMENT = {"vmax": "bus", "vmin": "bus", "line": "line", "trafo": "trafo"}


def row_labels(models: list[DistributionModel]) -> dict[str, np.ndarray]:
    """What each row of :func:`block_rows` limits: kind, DSO and pandapower element, as the
    columns of :data:`~.tso_markets.ROW_LABEL_COLUMNS` (text as objects, the dtype pandas
    infers from lists of strings). Arrays, not a table: the TSO's clearing joins them below
    its reserve rows' labels into the one table of the result."""
    kinds, dsos, elements, indices = [], [], [], []
    for m in models:
        keys = m.row_keys()
        element = [KIND_ELEMENT[kind] for kind, _ in keys]
        # a pandas Index lookup per row cost more than the rest of the labels: arrays, once
        ids = {e: m.network.net[e].index.to_numpy() for e in set(element)}
        kinds += [kind for kind, _ in keys]
        dsos += [m.name] * len(keys)
        elements += element
        indices += [ids[e][pos] for (_, pos), e in zip(keys, element, strict=True)]
    return {
        "kind": np.array(kinds, dtype=object),
        "dso": np.array(dsos, dtype=object),
        "element": np.array(elements, dtype=object),
        "element_index": np.array(indices, dtype=np.int64),
    }


def _block_bids(models: list[DistributionModel]) -> pd.DataFrame:
    """The DSOs' bids end to end, numbered from 0 (one DSO's own frame as it is: a
    concatenation costs more than the rest of a small clearing). The DSOs' frames are parts
    of one bid book, of the same columns and types."""
    if not models:
        return empty_bids()
    if len(models) == 1:
        return models[0].bids
    return pd.concat([m.bids for m in models], ignore_index=True)


def numbered_rows(bids: pd.DataFrame, rows: np.ndarray | slice) -> pd.DataFrame:
    """The rows ``rows`` (positions, or a slice: a view) of ``bids``, numbered from 0:
    ``reset_index(drop=True)`` of a selection, without copying the selected table again."""
    out = bids.iloc[rows]
    out.index = pd.RangeIndex(len(out))
    return out


def _lookup(
    ids: np.ndarray, values: np.ndarray, wanted: np.ndarray, missing: float = 0.0
) -> np.ndarray:
    """The value of each of ``wanted`` among unique ``ids`` (``missing`` where it is not
    there): a Series ``map``/``reindex`` on arrays, without building the Series or an index
    (:func:`~market_sim.columns.positions`)."""
    if not len(ids):
        return np.full(len(wanted), missing)
    pos = positions(ids, wanted)
    return np.where(pos >= 0, values[pos], missing)


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    """``parts`` end to end, without a copy when there is only one."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


@dataclass(frozen=True)
class IntegratedResult:
    """The integrated problem's outcome: what each DSO's bids got, and the problem's size."""

    accepted_mw: dict[str, np.ndarray]  # per DSO, aligned with DistributionModel.bids
    #: per DSO, aligned likewise: what its rows validate (:meth:`DistributionModel.validated`)
    validated_mw: dict[str, np.ndarray]
    excluded: tuple[str, ...]  # DSOs whose bids were dropped: no AC-safe dispatch was found
    rounds: int
    distribution_rows: int


class _Integrated:
    """The TSO's clearing with every DSO's rows (the :class:`~.linearised.Problem` here).

    The margins are per DSO (a DSO's margin grows when it fails on rows it already has), so
    the loop's common margin scale is not used.
    """

    def __init__(self, models: list[DistributionModel], clear, book: pd.DataFrame) -> None:
        self.models, self.clear, self.book = models, clear, book
        self.excluded: list[str] = []
        self.active: list[DistributionModel] = []
        self.failing: list[tuple[DistributionModel, list[Key], Vertex | None]] = []
        self.accepted: dict[str, np.ndarray] = {}
        #: the last clearing's result, bids and rows (set by the first :meth:`solve`, with
        #: which every search begins; no empty placeholder: a sparse matrix costs 20 us)
        self.result = None
        self.bids: pd.DataFrame | None = None
        self.rows: tuple[sp.csr_matrix, np.ndarray] | None = None
        self.clearings = self.n_rows = 0

    def solve(self, margin_scale: float) -> np.ndarray | None:
        self.active = [m for m in self.models if m.name not in self.excluded and len(m.bids)]
        bids = self._active_bids()
        a, b = block_rows(self.active)
        self.bids, self.rows = bids, (a, b)
        self.result = self.clear(bids, (a, b), row_labels(self.active))
        self.clearings += 1
        self.n_rows = len(b)
        if not self.result.ok:
            return None
        accepted = self.result.accepted
        return _lookup(
            numbers(accepted, "offer_id", np.int64),
            numbers(accepted, "mw"),
            numbers(bids, "bid_id", np.int64),
        )

    def _active_bids(self) -> pd.DataFrame:
        """The book's rows of the DSOs not excluded: the book as it is while none is."""
        kept = np.repeat([m.name not in self.excluded for m in self.models],
                         [len(m.bids) for m in self.models])  # fmt: skip
        return self.book if kept.all() else numbered_rows(self.book, np.flatnonzero(kept))

    def check(self, mw: np.ndarray, spare_flows: int) -> Checked:
        """AC power flow of every DSO whose bids were dispatched."""
        self.accepted, self.failing, start = {}, [], 0
        for m in self.active:
            mine = mw[start : start + len(m.bids)]
            start += len(m.bids)
            self.accepted[m.name] = mine
            bad, where = m.violated(mine) if mine.sum() > 1e-9 else ([], None)
            if bad:
                self.failing.append((m, bad, where))
        return Checked(mw, True, not self.failing)

    def learn(self, at: Checked) -> bool:
        """Carry the violated constraints, and their rows at the part that failed; a DSO that
        failed on carried ones only gets a larger margin."""
        for m, bad, where in self.failing:
            known = set(m.keys)
            real = [k for k in bad if k[0] != "nonconvergence"]
            m.keys += [k for k in real if k not in known]
            if all(k in known for k in bad):
                m.stuck += 1
            if where is not None:
                m.learn_at(where, real)
        return True


def integrated_clearing(
    models: list[DistributionModel], clear, book: pd.DataFrame | None = None
) -> tuple[object, IntegratedResult]:
    """Clear with every DSO's linearised constraints, AC-check, add violated ones, repeat.

    ``clear(bids, rows, labels) -> BalancingResult`` is the TSO's DC-OPF given the DSOs' bids
    (one frame, in block order), ``rows = (A, b)`` over them and what each row limits
    (:func:`row_labels`). ``book``: the models' bids end to end (one frame numbered from 0),
    where the caller has them so (else they are joined here). A DSO whose dispatch still fails
    the AC check after :data:`~.linearised.TSO_MANAGED`'s rounds has its bids dropped, and the
    TSO clears once more (dropping at once any DSO that fails then).
    """
    book = _block_bids(models) if book is None else book
    problem = _Integrated(models, clear, book)
    search = constraint_generation(problem, TSO_MANAGED)
    while search.ended == "exhausted":
        problem.excluded += [m.name for m, _, _ in problem.failing]
        search = constraint_generation(problem, replace(TSO_MANAGED, max_rounds=1))
    accepted = {} if search.ended == "infeasible" else problem.accepted
    validated = {m.name: m.validated(accepted[m.name]) for m in models if m.name in accepted}
    excluded = tuple(problem.excluded)
    assert problem.rows is not None  # every search solves at least once
    result = with_dlmp(problem.result, problem.bids, *problem.rows)
    return result, IntegratedResult(
        accepted, validated, excluded, problem.clearings, problem.n_rows
    )


def dlmp(result, bids: pd.DataFrame, a: sp.csr_matrix, b: np.ndarray) -> pd.Series:
    """Price of injection at each accepted bid's distribution bus (EUR/MWh, index bid_id).

    The DLMP: the transmission price at its DSO's interface bus plus, over the distribution
    rows ``a q <= b`` (columns: ``bids``), each row's dual times the row's sensitivity to an
    injection at the bid's bus. That is the marginal value of the bid's column in the
    integrated LP, so an accepted bid (reduced cost <= 0) is paid at least its ask, one
    strictly inside its bounds exactly its ask; the interface price alone ignores the
    distribution constraints the bid binds. The distribution rows are the clearing's last rows
    (:func:`~market_sim.markets.tso_markets.stack_rows` puts the reserve rows first).
    """
    duals = result.row_duals[len(result.row_duals) - len(b) :]
    per_mw = a.T @ duals if len(b) else np.zeros(len(bids))
    accepted = result.accepted
    offer_id = numbers(accepted, "offer_id", np.int64)
    der = offer_id >= 0
    sign = np.where(text(accepted, "direction")[der] == UP, 1.0, -1.0)
    # EUR/h per MW of its service
    value = _lookup(numbers(bids, "bid_id", np.int64), per_mw, offer_id[der], missing=np.nan)
    price = numbers(accepted, "bus_price_eur_per_mwh")[der] + sign * value
    return pd.Series(price, index=offer_id[der], dtype=float)


def with_dlmp(result, bids: pd.DataFrame, a: sp.csr_matrix, b: np.ndarray):
    """The integrated clearing's result with each DER bid's DLMP (for the settlement)."""
    if result is None or not result.ok or not len(bids):
        return result
    return replace(result, der_price_eur_per_mwh=dlmp(result, bids, a, b))
