"""Physical delivery: dispatched set-points applied to every DSO network, one AC power flow each.

This is the only stage that touches pandapower for the delivered state. The result is what
really happened in the period, whatever the validation promised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from market_sim.grid.injections import apply_bids
from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.types import Injections, PowerFlowResult


@dataclass(frozen=True)
class Delivered:
    """What one DSO network really delivered in a period, and its AC power flow.

    ``runpp_reason`` says why pandapower's ``runpp`` solved it instead of lightsim2grid ("" if
    lightsim2grid did).
    """

    injections: Injections
    power_flow: PowerFlowResult
    runpp_reason: str = ""


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
        delivered[name] = Delivered(injections, flow.result, flow.runpp_reason)
    return delivered
