"""The DSO's own needs and its distribution-level (local) flexibility market.

From the period's forecast the DSO sees predicted over- or under-voltages and overloaded lines
or transformers. It buys flexibility to remove them at least cost, under the linear network
model of the validation: the relief a bid gives a violated constraint is its sensitivity at the
forecast point (adjoint solves with the power-flow Jacobian). A linearised purchase is checked
with an AC power flow and topped up, re-linearised at the new point, until the violations are
gone or the rounds run out; what is left is reported as unmet relief.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from market_sim.grid.constraints import BidLayout, Caps, violations
from market_sim.grid.flow_summary import monitored_buses
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.grid.sensitivities import injection_sensitivities
from market_sim.markets.priority import Needs, least_cost_use
from market_sim.types import Injections, Limits

#: Aim this far inside a limit (pu for voltages, % for loading): the linear model overshoots.
MARGIN = {"vmax": 1e-3, "vmin": 1e-3, "line": 0.5, "trafo": 0.5}
MAX_ROUNDS = 4
_SENSITIVITY_KIND = {"vmax": "vm", "vmin": "vm", "line": "line", "trafo": "trafo"}


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
        trafo=np.where(trafo_on, limits.max_loading_percent, np.nan),
    )


def dso_needs(
    dn: DistributionNetwork,
    point: PowerFlowDetail,
    bids: pd.DataFrame,
    limits: Limits,
    penalty_eur_per_h: float,
) -> Needs | None:
    """The relief the DSO needs at an operating point, and what each bid gives per MW.

    Rows are violated constraints; ``need_mw`` is the overshoot plus a margin (pu or %), and
    ``effect[k, b]`` the decrease of constraint k per MW of bid b. None without violations.
    """
    caps = statutory_caps(dn, limits)
    found = violations(dn, point, caps)
    if not found or not len(bids):
        return None
    sens = injection_sensitivities(point, [(_SENSITIVITY_KIND[v.kind], v.pos) for v in found])
    layout = BidLayout.of(dn, bids)
    buses = layout.case_bus(point)
    effect = np.zeros((len(found), len(bids)))
    if sens is not None:
        ok = buses >= 0
        orient = np.array([-1.0 if v.kind == "vmin" else 1.0 for v in found])[:, None]
        effect[:, ok] = -orient * sens[:, buses[ok]] * layout.inj_sign[ok]
    need = np.array([v.overshoot + MARGIN[v.kind] for v in found])
    return Needs("dso", need, np.clip(effect, 0.0, None), penalty_eur_per_h, critical=True)


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
    layout = BidLayout.of(dn, bids)
    bought = np.zeros(len(bids))
    point = run_power_flow_detailed(dn, baseline, limits, write=False)
    caps = statutory_caps(dn, limits)
    before = tuple(v.name for v in violations(dn, point, caps)) if point.result.converged else ()
    first_needs, rounds = None, 0
    while point.result.converged and rounds < MAX_ROUNDS:
        needs = dso_needs(dn, point, bids, limits, penalty_eur_per_h)
        if needs is None:
            break
        first_needs = first_needs or needs
        helps = needs.effect.max(axis=0) > 0  # a bid that relieves nothing is not bought
        left = bids.assign(mw=np.where(helps, bids.mw.to_numpy(float) - bought, 0.0))
        extra = least_cost_use(left, [needs])["dso"]
        if extra.sum() <= 1e-9:
            break
        bought += extra
        rounds += 1
        point = run_power_flow_detailed(
            dn, layout.injections(baseline, bought), limits, write=False
        )
    after = tuple(v.name for v in violations(dn, point, caps)) if point.result.converged else ()
    bought = np.where(bought > 1e-6, bought, 0.0)
    table = pd.DataFrame({"bid_id": bids.bid_id.to_numpy(np.int64), "mw": bought})
    cost = float(bids.price_eur_per_mwh.to_numpy(float) @ bought)
    ids = bids.bid_id.to_numpy(np.int64)
    return LocalMarketResult(table[table.mw > 0], first_needs, ids, before, after, cost, rounds)
