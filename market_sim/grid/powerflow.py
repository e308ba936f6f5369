"""AC power flow of a distribution network for given injections: the entry points.

Speed matters here (thousands of power flows per run), so power flows run on lightsim2grid's
native grid model (:mod:`.lightsim_model`), which matches pandapower's ``runpp`` to about
1e-10 pu. Networks it does not reproduce (``gen`` elements, several ext_grids,
voltage-dependent loads, a missing lightsim2grid, see :mod:`.lightsim_conversion`) fall back
to ``runpp`` (:mod:`.pandapower_reference`): correct, slower, no sensitivities; the result
says so (:attr:`PowerFlowDetail.runpp_reason`). Limits are counted in :mod:`.flow_summary`,
sensitivities come from :mod:`.sensitivities`, set-points from :mod:`.injections`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from pandapower.powerflow import LoadflowNotConverged

from market_sim.grid import lightsim_model
from market_sim.grid.flow_summary import (
    Flows,
    LimitCheck,
    Monitored,
    check_limits,
    not_converged,
    summary,
)
from market_sim.grid.injections import tap_positions, write_injections
from market_sim.grid.lightsim_model import State
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.pandapower_reference import runpp_flows
from market_sim.types import Injections, Limits, PowerFlowResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PowerFlowDetail:
    """A power flow summary plus the per-element arrays validation needs.

    Arrays are aligned with ``net.bus`` / ``net.line`` / ``net.trafo`` positional order and are
    NaN for elements that were not computed (out of service, isolated, not converged).
    ``result`` (the :class:`~market_sim.types.PowerFlowResult` summary) is counted on first
    use from :attr:`limit_check`, ``flows`` checked against ``summary_of`` (the limits and
    monitored elements it counts against): most of a validation's power flows only ask
    :attr:`converged`.
    ``state`` is the solver state for sensitivities (None on the pandapower fallback path).
    ``runpp_reason`` says why pandapower's ``runpp`` solved it instead of lightsim2grid ("" if
    lightsim2grid did), so that a caller can record the slower, sensitivity-free fallback.
    ``flows``: the whole per-element result (angles, branch flows; None if not converged).
    ``memo``: what the validators derive from this one point and ask for again (its excess
    over a set of limits, its sensitivities), see :func:`memoised`.
    """

    vm_pu: np.ndarray
    line_loading_percent: np.ndarray
    trafo_loading_percent: np.ndarray
    state: State | None = None
    runpp_reason: str = ""
    flows: Flows | None = None
    summary_of: tuple[Limits, Monitored] | None = field(default=None, repr=False)
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def converged(self) -> bool:
        """Whether the power flow converged (``result.converged``, without counting)."""
        return self.flows is not None

    @cached_property
    def limit_check(self) -> LimitCheck | None:
        """``flows`` against the limits of ``summary_of`` (:func:`.check_limits`), None if not
        converged: what :attr:`result` counts and a delivery labels the violations by."""
        if self.flows is None or self.summary_of is None:
            return None
        limits, mon = self.summary_of
        return check_limits(None, self.flows, limits, mon)

    @cached_property
    def result(self) -> PowerFlowResult:
        """The power flow's summary: limit violations counted by :func:`.summary`."""
        check = self.limit_check
        return not_converged() if check is None else summary(self.flows, check)


def memoised(d: PowerFlowDetail, key: Any, owner: object, compute: Callable[[], Any]) -> Any:
    """``compute()`` of the point ``d``, computed once per ``key`` and ``owner``.

    A validation asks the same questions of one point many times (its baseline is screened
    and linearised again in every round of both directions). ``owner`` is the object the
    answer also depends on (the caps compared with; None if nothing): a later call with
    another owner computes afresh and replaces the kept answer.
    """
    kept = d.memo.get(key)
    if kept is None or kept[0] is not owner:
        kept = (owner, compute())
        d.memo[key] = kept
    return kept[1]


def run_power_flow_detailed(
    dn: DistributionNetwork,
    injections: Injections,
    limits: Limits,
    write: bool = True,
    warm_start: PowerFlowDetail | None = None,
) -> PowerFlowDetail:
    """AC power flow with per-bus/branch arrays; never raises on non-convergence.

    ``write=False`` skips copying the set-points into ``dn.net`` (inner loops do not need it;
    the ``runpp`` fallback reads them from there, so it always writes).
    ``warm_start`` starts Newton-Raphson from that earlier solution of the same network
    instead of the no-load solution (validation moves the set-points a little around it).
    """
    if write:
        write_injections(dn, injections)
    try:
        model = lightsim_model.model_for(dn, tap_positions(dn, injections))
    except LoadflowNotConverged as exc:  # the no-load reference of a new tap setting
        log.debug("%s: building the power-flow model failed: %s", dn.code, exc)
        return _failed(dn, "")
    if model is None:
        if not write:
            write_injections(dn, injections)
        reason = lightsim_model.runpp_reason(dn)
        return _detail(dn, runpp_flows(dn.net, dn.code), None, limits, reason)
    solved = lightsim_model.run(model, injections, _start(model, warm_start))
    if solved is None:
        log.debug("%s: power flow did not converge", dn.code)
        return _failed(dn, "")
    return _detail(dn, *solved, limits, "")


def run_power_flow(
    dn: DistributionNetwork, injections: Injections, limits: Limits
) -> PowerFlowResult:
    """AC power flow summary of ``injections`` on ``dn`` (converged=False instead of raising)."""
    return run_power_flow_detailed(dn, injections, limits).result


def monitored(dn: DistributionNetwork) -> Monitored:
    """The network's :class:`~.flow_summary.Monitored` elements, read from ``dn.net`` once.

    Kept in ``dn.solver_cache`` like the power-flow models: the topology does not change
    during a run (a modified net comes with a new cache), and every power flow reads it.
    """
    cache = dn.solver_cache
    if "monitored" not in cache:
        cache["monitored"] = Monitored.of(dn.net)
    return cache["monitored"]


def _start(model: lightsim_model.Model, warm_start: PowerFlowDetail | None) -> np.ndarray | None:
    """Grid-model start voltages from an earlier solution of ``model``; None for the default."""
    state = warm_start.state if warm_start is not None else None
    if state is None or state.model is not model:
        return None
    v_start = model.v0.copy()
    v_start[model.to_grid] = state.v
    return v_start


def _detail(
    dn: DistributionNetwork,
    flows: Flows | None,
    state: State | None,
    limits: Limits,
    runpp_reason: str,
) -> PowerFlowDetail:
    if flows is None:
        return _failed(dn, runpp_reason)
    return PowerFlowDetail(
        flows.vm_pu,
        flows.line_loading_percent,
        flows.trafo_loading_percent,
        state,
        runpp_reason,
        flows,
        (limits, monitored(dn)),
    )


def _failed(dn: DistributionNetwork, runpp_reason: str) -> PowerFlowDetail:
    net = dn.net
    return PowerFlowDetail(
        np.full(len(net.bus), np.nan),
        np.full(len(net.line), np.nan),
        np.full(len(net.trafo), np.nan),
        None,
        runpp_reason,
    )
