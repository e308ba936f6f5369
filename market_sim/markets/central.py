"""TSO-managed clearing: one integrated problem over transmission and every DSO network.

In the TSO-managed model (the paper's Fig. 1, step 2a) the TSO validates and dispatches at
once: its balancing DC-OPF carries, for every DSO, the distribution constraints that can bind,
linearised at the state the DSO reported (voltage and loading sensitivities from the power-flow
Jacobian). The TSO then checks the dispatch with an AC power flow of each reported state, adds
any constraint found violated and clears again. The problem grows with the distribution
networks: the number of rows and the solve time are recorded every period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from market_sim.grid.constraints import (
    BidLayout,
    Caps,
    cap_of,
    effective_limits,
    values,
    violations,
)
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.grid.sensitivities import injection_sensitivities
from market_sim.types import DOWN, UP, Injections, Limits, empty_bids

#: A constraint is carried if activation could bring it this close to its limit (pu or %).
SCREEN_MARGIN = {"vmax": 0.01, "vmin": 0.01, "line": 10.0, "trafo": 10.0}
#: Aim this far inside a limit: the linear model is first-order only.
MARGIN = {"vmax": 5e-4, "vmin": 5e-4, "line": 0.5, "trafo": 0.5}
MAX_ROUNDS = 3
Key = tuple[str, int]


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
    margin_scale: float = 1.0  # grows when the AC check finds a carried constraint violated

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
        for kind in ("vmax", "vmin", "line", "trafo"):
            worst = np.full(len(cap_of(caps, kind)), -np.inf)
            for d in points:
                if d.result.converged:
                    worst = np.fmax(worst, values(d, kind) - cap_of(caps, kind))
            near = np.flatnonzero(np.nan_to_num(worst, nan=-np.inf) > -SCREEN_MARGIN[kind])
            model.keys += [(kind, int(p)) for p in near]
        return model

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``A x <= b`` over this DSO's bids (MW), linearised at the reported state."""
        if not self.keys or self.point.state is None:
            return np.zeros((0, len(self.bids))), np.zeros(0)
        layout = BidLayout.of(self.network, self.bids)
        bus = layout.case_bus(self.point)
        kinds = [("vm" if k in ("vmax", "vmin") else k, p) for k, p in self.keys]
        sens = injection_sensitivities(self.point, kinds, bus)
        orient = np.array([-1.0 if k == "vmin" else 1.0 for k, _ in self.keys])[:, None]
        a = orient * sens * layout.inj_sign
        b = np.array([
            float(cap_of(self.caps, k)[p]) - float(values(self.point, k)[p])
            - MARGIN[k] * self.margin_scale
            for k, p in self.keys
        ])  # fmt: skip
        return a, b

    def violated(self, mw: np.ndarray) -> list[Key]:
        """Constraints an AC power flow of the reported state with ``mw`` dispatched violates."""
        layout = BidLayout.of(self.network, self.bids)
        d = run_power_flow_detailed(self.network, layout.injections(self.state, mw),
                                    self.limits, write=False)  # fmt: skip
        if not d.result.converged:
            return [("nonconvergence", -1)]
        return [(v.kind, v.pos) for v in violations(self.network, d, self.caps)]


def block_rows(models: list[DistributionModel]) -> tuple[np.ndarray, np.ndarray]:
    """The DSOs' rows side by side: one block per DSO over its own bids' columns."""
    blocks = [m.rows() for m in models]
    n_cols = sum(len(m.bids) for m in models)
    matrix = np.zeros((sum(len(b) for _, b in blocks), n_cols))
    row = col = 0
    for (a, b), m in zip(blocks, models, strict=True):
        matrix[row : row + len(b), col : col + len(m.bids)] = a
        row, col = row + len(b), col + len(m.bids)
    return matrix, np.concatenate([b for _, b in blocks]) if blocks else np.zeros(0)


@dataclass(frozen=True)
class IntegratedResult:
    """The integrated problem's outcome: what each DSO's bids got, and the problem's size."""

    accepted_mw: dict[str, np.ndarray]  # per DSO, aligned with DistributionModel.bids
    excluded: tuple[str, ...]  # DSOs whose bids were dropped: no AC-safe dispatch was found
    rounds: int
    distribution_rows: int


def integrated_clearing(models: list[DistributionModel], clear) -> tuple[object, IntegratedResult]:
    """Clear with every DSO's linearised constraints, AC-check, add violated ones, repeat.

    ``clear(bids, rows) -> BalancingResult`` is the TSO's DC-OPF given the DSOs' bids (one
    frame, in block order) and ``rows = (A, b)`` over them. A DSO whose dispatch still fails
    the AC check after ``MAX_ROUNDS`` has its bids dropped, and the TSO clears once more.
    """
    excluded: list[str] = []
    rounds, result, accepted = 0, None, {}
    while True:
        active = [m for m in models if m.name not in excluded and len(m.bids)]
        bids = pd.concat([empty_bids()] + [m.bids for m in active], ignore_index=True)
        rows = block_rows(active)
        result = clear(bids, rows)
        rounds += 1
        if not result.ok:
            return result, IntegratedResult({}, tuple(excluded), rounds, len(rows[1]))
        mw = (
            bids.bid_id.map(result.accepted.set_index("offer_id").mw).fillna(0.0)
            if len(bids)
            else pd.Series(dtype=float)
        )
        accepted, start, failing = {}, 0, []
        for m in active:
            mine = mw.to_numpy(float)[start : start + len(m.bids)]
            start += len(m.bids)
            accepted[m.name] = mine
            bad = m.violated(mine) if mine.sum() > 1e-9 else []
            if not bad:
                continue
            failing.append(m)
            known = set(m.keys)
            m.keys += [k for k in bad if k not in known and k[0] != "nonconvergence"]
            if all(k in known for k in bad):
                m.margin_scale *= 4.0
        if not failing:
            return result, IntegratedResult(accepted, tuple(excluded), rounds, len(rows[1]))
        if rounds >= MAX_ROUNDS:
            excluded += [m.name for m in failing]
