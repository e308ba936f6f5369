"""The DSO's own needs and its distribution-level (local) flexibility market.

From the period's forecast the DSO sees predicted over- or under-voltages and overloaded lines
or transformers. It buys flexibility to remove them at least cost, under the linear network
model of the validation: the relief a bid gives a violated constraint is its sensitivity at the
forecast point (adjoint solves with the power-flow Jacobian). A linearised purchase is checked
with an AC power flow and topped up, re-linearised at the new point, until the violations are
gone or the rounds run out; what is left is reported as unmet relief. Rows, AC check and loop
are the shared mechanism of :mod:`market_sim.grid.linearised` (settings
:data:`~market_sim.grid.linearised.LOCAL_MARKET`); the least-cost purchase is this module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from market_sim.grid.constraints import BidLayout, Caps, Violation, violations
from market_sim.grid.flow_summary import monitored_buses
from market_sim.grid.linearised import (
    LOCAL_MARKET,
    Checked,
    ac_check,
    bounds,
    constraint_generation,
    gradients,
)
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.markets.priority import Needs, least_cost_use, left_after
from market_sim.types import Injections, Limits


@dataclass(frozen=True)
class LocalMarketResult:
    """What the DSO bought (``bought``: bid_id, mw) and what it could not fix.

    ``needs`` are the needs at the forecast point, their ``effect`` columns aligned with
    ``bid_ids`` (the bids the market was offered).
    """

    bought: pd.DataFrame
    needs: Needs | None
    bid_ids: np.ndarray
    violations_before: tuple[str, ...]
    violations_after: tuple[str, ...]
    cost_eur_per_h: float
    rounds: int
    message: str = ""  # why the DSO stopped buying, if its LP failed


def statutory_caps(dn: DistributionNetwork, limits: Limits) -> Caps:
    """The DSO's limits on every monitored element, not relaxed to the baseline."""
    net = dn.net
    mon = monitored_buses(net)
    line_on = net.line["in_service"].to_numpy(dtype=bool)
    trafo_on = net.trafo["in_service"].to_numpy(dtype=bool)
    return Caps(
        vmax=np.where(mon, limits.vm_max_pu, np.nan),
        vmin=np.where(mon, limits.vm_min_pu, np.nan),
        line=np.where(line_on, limits.max_loading_percent, np.nan),
        trafo=np.where(trafo_on, limits.trafo_limits(len(trafo_on)), np.nan),
    )


def dso_needs(
    point: PowerFlowDetail,
    found: list[Violation],
    layout: BidLayout,
    caps: Caps,
    penalty_eur_per_h: float,
) -> Needs:
    """The relief the DSO needs for the violations ``found`` at an operating point, and what
    each bid gives per MW.

    ``layout``: where the bids act; ``caps``: the DSO's limits (:func:`statutory_caps`).
    Rows are violated constraints; ``need_mw`` is the overshoot plus a margin (pu or %), and
    ``effect[k, b]`` the decrease of constraint k per MW of bid b.
    """
    keys = [(v.kind, v.pos) for v in found]
    grad = gradients(point, keys, layout.case_bus(point))
    a = np.zeros((len(keys), len(layout.offered))) if grad is None else grad * layout.inj_sign
    b = bounds(point, keys, a, None, caps, LOCAL_MARKET)
    # The rows A x <= b of the violated constraints have b < 0 (the overshoot plus the
    # margin): what a bid relieves per MW is -A, the need -b.
    return Needs("dso", -b, np.clip(-a, 0.0, None), penalty_eur_per_h)


class _Relief:
    """Least-cost relief, topped up at every AC check (the :class:`~.linearised.Problem`).

    Each purchase is linearised at the point the last one reached, so nothing is kept
    between rounds and the loop's margin scale is not used.
    """

    def __init__(
        self,
        dn: DistributionNetwork,
        baseline: Injections,
        bids: pd.DataFrame,
        limits: Limits,
        caps: Caps,
        penalty_eur_per_h: float,
        point: PowerFlowDetail,
    ) -> None:
        self.dn, self.baseline, self.bids, self.limits = dn, baseline, bids, limits
        self.caps = caps
        self.penalty = penalty_eur_per_h
        self.point = point
        self.bought = np.zeros(len(bids))
        self.first_needs: Needs | None = None
        self.purchases = 0
        self.failure = ""

    @cached_property
    def layout(self) -> BidLayout:
        """Where the bids act: built when a violation is first found (most periods have none)."""
        return BidLayout.of(self.dn, self.bids)

    def solve(self, margin_scale: float) -> np.ndarray | None:
        """Buy the least-cost relief of the violations at the current point (None: none)."""
        found = violations(self.dn, self.point, self.caps)
        if not found or not len(self.bids):
            return None
        needs = dso_needs(self.point, found, self.layout, self.caps, self.penalty)
        self.first_needs = self.first_needs or needs
        helps = needs.effect.max(axis=0) > 0  # a bid that relieves nothing is not bought
        # what each bid has left, nothing of a device bought the other way in an earlier round
        left = left_after(self.bids, self.bids[["bid_id"]].assign(mw=self.bought))
        left = left.assign(mw=np.where(helps, left.mw.to_numpy(float), 0.0))
        use = least_cost_use(left, [needs])
        if not use.ok:
            self.failure = use.message
            return None
        extra = use["dso"]
        if extra.sum() <= 1e-9:
            return None
        self.bought = self.bought + extra
        self.purchases += 1
        return self.bought

    def check(self, x: np.ndarray, spare_flows: int) -> Checked:
        inj = self.layout.injections(self.baseline, x)
        self.point, viol = ac_check(self.dn, inj, self.limits, self.caps)
        return Checked(x, viol is not None, viol is not None and not viol)

    def learn(self, at: Checked) -> bool:
        return True  # the next purchase is linearised at the point just reached


def clear_local_market(
    dn: DistributionNetwork,
    baseline: Injections,
    bids: pd.DataFrame,
    limits: Limits,
    penalty_eur_per_h: float,
) -> LocalMarketResult:
    """Buy relief for the predicted violations at least cost from ``bids`` (validated bids).

    Each round linearises at the current point, buys the least-cost relief (a bid's capacity is
    what it has left), and checks the purchase with an AC power flow.
    """
    point = run_power_flow_detailed(dn, baseline, limits, write=False)
    caps = statutory_caps(dn, limits)
    relief = _Relief(dn, baseline, bids, limits, caps, penalty_eur_per_h, point)
    if point.result.converged:
        constraint_generation(relief, LOCAL_MARKET)
    before, after = (
        tuple(v.name for v in violations(dn, d, caps)) if d.result.converged else ()
        for d in (point, relief.point)
    )
    bought = np.where(relief.bought > 1e-6, relief.bought, 0.0)
    cost = float(bids.price_eur_per_mwh.to_numpy(float) @ bought)
    ids = bids.bid_id.to_numpy(np.int64)
    rows = np.flatnonzero(bought > 0)  # labelled by their row in ``bids``
    return LocalMarketResult(
        pd.DataFrame({"bid_id": ids[rows], "mw": bought[rows]}, index=rows),
        relief.first_needs,
        ids,
        before,
        after,
        cost,
        relief.purchases,
        relief.failure,
    )
