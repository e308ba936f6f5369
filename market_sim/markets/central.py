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

from market_sim.grid.constraints import BidLayout, Caps, effective_limits
from market_sim.grid.linearised import (
    TSO_MANAGED,
    Checked,
    Key,
    ac_check,
    constraint_generation,
    rows,
    screen,
)
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.types import DOWN, UP, Injections, Limits, empty_bids


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

    @classmethod
    def at(
        cls,
        name: str,
        dn: DistributionNetwork,
        state: Injections,
        bids: pd.DataFrame,
        limits: Limits,
    ) -> DistributionModel:
        """Linearisation point and screened constraints: near their limit at the reported
        state, or pushed past it by all up or all down bids activated together."""
        point = run_power_flow_detailed(dn, state, limits, write=False)
        caps = effective_limits(dn, point, limits) if point.result.converged else None
        model = cls(name, dn, state, bids.reset_index(drop=True), limits, point, caps, [])
        if caps is None or not len(bids):
            return model
        layout = BidLayout.of(dn, model.bids)
        points = [point]
        for direction in (UP, DOWN):
            x = np.where(model.bids.direction == direction, layout.offered, 0.0)
            points.append(run_power_flow_detailed(dn, layout.injections(state, x), limits,
                                                  write=False))  # fmt: skip
        model.keys = screen(dn, caps, points, TSO_MANAGED)
        return model

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``A x <= b`` over this DSO's bids (MW), linearised at the reported state."""
        if not self.keys or self.point.state is None:
            return np.zeros((0, len(self.bids))), np.zeros(0)
        layout = BidLayout.of(self.network, self.bids)
        scale = TSO_MANAGED.margin_scale(self.stuck)
        return rows(self.point, self.keys, layout, self.caps, TSO_MANAGED, scale, reuse=self.reuse)

    def violated(self, mw: np.ndarray) -> list[Key]:
        """Constraints an AC power flow of the reported state with ``mw`` dispatched violates."""
        inj = BidLayout.of(self.network, self.bids).injections(self.state, mw)
        _, viol = ac_check(self.network, inj, self.limits, self.caps)
        if viol is None:
            return [("nonconvergence", -1)]
        return [(v.kind, v.pos) for v in viol]


def block_rows(models: list[DistributionModel]) -> tuple[sp.csr_matrix, np.ndarray]:
    """The DSOs' rows side by side: one block per DSO over its own bids' columns.

    Each block is a DSO's dense sensitivity rows, written into the CSR arrays as they are
    (every entry kept, no copy for a single DSO): scipy's ``block_diag`` took about 2 s per
    clearing on the 10k-bus grid, whose rows are [up to 1,800 keys x 13k bids].
    """
    blocks = [m.rows() for m in models]
    widths = [len(m.bids) for m in models]
    starts = np.r_[0, np.cumsum(widths)]
    nnz = sum(a.size for a, _ in blocks)
    index = np.int32 if max(nnz, int(starts[-1])) < np.iinfo(np.int32).max else np.int64
    data, indices, indptr, done = [], [], [np.zeros(1, index)], 0
    for (a, _), col, width in zip(blocks, starts[:-1], widths, strict=True):
        data.append(a.ravel())
        indices.append(np.tile(np.arange(col, col + width, dtype=index), a.shape[0]))
        indptr.append(done + width * np.arange(1, a.shape[0] + 1, dtype=index))
        done += a.size
    shape = (sum(len(b) for _, b in blocks), int(starts[-1]))
    arrays = (_joined(data, float), _joined(indices, index), np.concatenate(indptr))
    return sp.csr_matrix(arrays, shape=shape), _joined([b for _, b in blocks], float)


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    """``parts`` end to end, without a copy when there is only one."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


@dataclass(frozen=True)
class IntegratedResult:
    """The integrated problem's outcome: what each DSO's bids got, and the problem's size."""

    accepted_mw: dict[str, np.ndarray]  # per DSO, aligned with DistributionModel.bids
    excluded: tuple[str, ...]  # DSOs whose bids were dropped: no AC-safe dispatch was found
    rounds: int
    distribution_rows: int


class _Integrated:
    """The TSO's clearing with every DSO's rows (the :class:`~.linearised.Problem` here).

    The margins are per DSO (a DSO's margin grows when it fails on rows it already has), so
    the loop's common margin scale is not used.
    """

    def __init__(self, models: list[DistributionModel], clear) -> None:
        self.models, self.clear = models, clear
        self.excluded: list[str] = []
        self.active: list[DistributionModel] = []
        self.failing: list[tuple[DistributionModel, list[Key]]] = []
        self.accepted: dict[str, np.ndarray] = {}
        self.result = None
        self.bids = empty_bids()
        self.rows: tuple[sp.csr_matrix, np.ndarray] = (sp.csr_matrix((0, 0)), np.zeros(0))
        self.clearings = self.n_rows = 0

    def solve(self, margin_scale: float) -> np.ndarray | None:
        self.active = [m for m in self.models if m.name not in self.excluded and len(m.bids)]
        bids = pd.concat([empty_bids()] + [m.bids for m in self.active], ignore_index=True)
        a, b = block_rows(self.active)
        self.bids, self.rows = bids, (a, b)
        self.result = self.clear(bids, (a, b))
        self.clearings += 1
        self.n_rows = len(b)
        if not self.result.ok:
            return None
        if not len(bids):
            return np.zeros(0)
        return (
            bids.bid_id.map(self.result.accepted.set_index("offer_id").mw)
            .fillna(0.0)
            .to_numpy(float)
        )

    def check(self, mw: np.ndarray, spare_flows: int) -> Checked:
        """AC power flow of every DSO whose bids were dispatched."""
        self.accepted, self.failing, start = {}, [], 0
        for m in self.active:
            mine = mw[start : start + len(m.bids)]
            start += len(m.bids)
            self.accepted[m.name] = mine
            bad = m.violated(mine) if mine.sum() > 1e-9 else []
            if bad:
                self.failing.append((m, bad))
        return Checked(mw, True, not self.failing)

    def learn(self, at: Checked) -> bool:
        """Carry the violated constraints; a DSO that failed on carried ones only gets a
        larger margin."""
        for m, bad in self.failing:
            known = set(m.keys)
            m.keys += [k for k in bad if k not in known and k[0] != "nonconvergence"]
            if all(k in known for k in bad):
                m.stuck += 1
        return True


def integrated_clearing(models: list[DistributionModel], clear) -> tuple[object, IntegratedResult]:
    """Clear with every DSO's linearised constraints, AC-check, add violated ones, repeat.

    ``clear(bids, rows) -> BalancingResult`` is the TSO's DC-OPF given the DSOs' bids (one
    frame, in block order) and ``rows = (A, b)`` over them. A DSO whose dispatch still fails
    the AC check after :data:`~.linearised.TSO_MANAGED`'s rounds has its bids dropped, and the
    TSO clears once more (dropping at once any DSO that fails then).
    """
    problem = _Integrated(models, clear)
    search = constraint_generation(problem, TSO_MANAGED)
    while search.ended == "exhausted":
        problem.excluded += [m.name for m, _ in problem.failing]
        search = constraint_generation(problem, replace(TSO_MANAGED, max_rounds=1))
    accepted = {} if search.ended == "infeasible" else problem.accepted
    excluded = tuple(problem.excluded)
    result = with_dlmp(problem.result, problem.bids, *problem.rows)
    return result, IntegratedResult(accepted, excluded, problem.clearings, problem.n_rows)


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
    per_mw = pd.Series(a.T @ duals if len(b) else np.zeros(len(bids)), index=bids.bid_id)
    der = result.accepted[result.accepted.offer_id >= 0]
    sign = np.where(der.direction.to_numpy() == UP, 1.0, -1.0)
    value = per_mw.reindex(der.offer_id).to_numpy(float)  # EUR/h per MW of its service
    price = der.bus_price_eur_per_mwh.to_numpy(float) + sign * value
    return pd.Series(price, index=der.offer_id.to_numpy(np.int64), dtype=float)


def with_dlmp(result, bids: pd.DataFrame, a: sp.csr_matrix, b: np.ndarray):
    """The integrated clearing's result with each DER bid's DLMP (for the settlement)."""
    if result is None or not result.ok or not len(bids):
        return result
    return replace(result, der_price_eur_per_mwh=dlmp(result, bids, a, b))
