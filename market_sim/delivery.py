"""Physical delivery: dispatched set-points applied to every DSO network, one AC power flow each.

This is the only stage that touches pandapower for the delivered state. The result is what
really happened in the period, whatever the validation promised. The same machinery, with
nothing activated, gives the baseline (:func:`baseline`): the operating point's own violations,
so that the KPIs can tell them from those the DER activation caused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from market_sim.grid.flow_summary import Flows, violated_elements
from market_sim.grid.injections import apply_bids
from market_sim.grid.powerflow import PowerFlowDetail, run_power_flow_detailed
from market_sim.types import Injections, PowerFlowResult


@dataclass(frozen=True)
class Delivered:
    """What one DSO network really delivered in a period, and its AC power flow.

    ``runpp_reason`` says why pandapower's ``runpp`` solved it instead of lightsim2grid ("" if
    lightsim2grid did). ``violated``: labels of the elements outside the network's limits
    ("bus 12", "line 3"), None if the power flow did not converge (nothing is known then).
    ``line_loading_percent`` and ``trafo_loading_percent``: each line's and transformer's
    loading (aligned with ``net.line`` / ``net.trafo``, NaN where not computed), what the
    assets wear by (:mod:`market_sim.wear`).
    """

    injections: Injections
    power_flow: PowerFlowResult
    runpp_reason: str = ""
    violated: frozenset[str] | None = None
    line_loading_percent: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trafo_loading_percent: np.ndarray = field(default_factory=lambda: np.zeros(0))


def deliver(
    dsos: Mapping, points: Mapping[str, Injections], dispatch: pd.DataFrame, bids: pd.DataFrame
) -> dict[str, Delivered]:
    """Each DSO's delivered injections and the AC power flow that checks them.

    ``points``: each DSO's operating point (its forecast, with the taps it chose);
    ``dispatch`` holds ``bid_id`` and ``mw`` as delivered by the DER; the location of each bid
    comes from the bid book.
    """
    located = dispatch.merge(
        bids[["bid_id", "dso", "element", "element_index", "direction"]], on="bid_id"
    )
    delivered = {}
    for name, dso in dsos.items():
        injections = apply_bids(dso.network, points[name], located[located.dso == name])
        flow = run_power_flow_detailed(dso.network, injections, dso.limits)
        violated = _violated(dso, flow)
        delivered[name] = Delivered(
            injections,
            flow.result,
            flow.runpp_reason,
            violated,
            flow.line_loading_percent,
            flow.trafo_loading_percent,
        )
    return delivered


def baseline(dsos: Mapping, points: Mapping[str, Injections]) -> dict[str, Delivered]:
    """Each DSO's operating point with no DER activated: one AC power flow per network.

    Violations found here are the network's own (baseline); those only after delivery are
    DER-caused. It writes the set-points into the networks, so run it before :func:`deliver`,
    which leaves them in the delivered state.
    """
    ids = pd.Series(dtype="int64")
    nothing = pd.DataFrame({"bid_id": ids, "mw": pd.Series(dtype=float)})
    located = {c: pd.Series(dtype=object) for c in ("dso", "element", "direction")}
    no_bids = pd.DataFrame({"bid_id": ids, "element_index": ids, **located})
    return deliver(dsos, points, nothing, no_bids)


def _violated(dso, flow: PowerFlowDetail) -> frozenset[str] | None:
    if not flow.result.converged:
        return None
    nan = float("nan")
    flows = Flows(flow.vm_pu, flow.line_loading_percent, flow.trafo_loading_percent, nan, nan)
    return violated_elements(dso.network.net, flows, dso.limits)
