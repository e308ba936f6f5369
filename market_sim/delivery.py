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

from market_sim.columns import Columns, numbers, positions, text
from market_sim.grid.flow_summary import violated_elements
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
    dsos: Mapping, points: Mapping[str, Injections], dispatch: Columns, bids: pd.DataFrame
) -> dict[str, Delivered]:
    """Each DSO's delivered injections and the AC power flow that checks them.

    ``points``: each DSO's operating point (its forecast, with the taps it chose);
    ``dispatch`` holds the columns ``bid_id`` and ``mw`` as delivered by the DER; the location
    of each bid comes from the bid book.
    """
    located = _located(dispatch, bids)
    return {
        name: _delivered(dso, apply_bids(dso.network, points[name], located.get(name)))
        for name, dso in dsos.items()
    }


def baseline(dsos: Mapping, points: Mapping[str, Injections]) -> dict[str, Delivered]:
    """Each DSO's operating point with no DER activated: one AC power flow per network.

    Violations found here are the network's own (baseline); those only after delivery are
    DER-caused. It leaves the networks' tables as they were (writing the set-points cost a
    third of a power flow): :func:`deliver` writes the delivered state into them.
    """
    return {
        name: _delivered(dso, apply_bids(dso.network, points[name], None), write=False)
        for name, dso in dsos.items()
    }


def _located(dispatch: Columns, bids: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Each DSO's delivered bids (the columns direction, mw, element, element_index), in
    dispatch order; a bid not in the bid book is not delivered. Numpy columns: a period has a
    few hundred rows, where a table per DSO would cost more than the rest."""
    at = positions(numbers(bids, "bid_id", np.int64), numbers(dispatch, "bid_id", np.int64))
    booked = at >= 0
    at, mw = at[booked], numbers(dispatch, "mw")[booked]
    dso = text(bids, "dso")[at]
    columns = {
        "direction": text(bids, "direction")[at],
        "mw": mw,
        "element": text(bids, "element")[at],
        "element_index": numbers(bids, "element_index", np.int64)[at],
    }
    located = {}
    for name in dict.fromkeys(dso.tolist()):
        mine = dso == name  # once per DSO, not per column: it compares Python strings
        located[name] = {c: values[mine] for c, values in columns.items()}
    return located


def _delivered(dso, injections: Injections, write: bool = True) -> Delivered:
    """The AC power flow of a DSO network at ``injections``, and what it violates; ``write``:
    whether the set-points are written into the network's tables (see
    :func:`~.grid.powerflow.run_power_flow_detailed`)."""
    flow = run_power_flow_detailed(dso.network, injections, dso.limits, write=write)
    return Delivered(
        injections,
        flow.result,
        flow.runpp_reason,
        _violated(dso, flow),
        flow.line_loading_percent,
        flow.trafo_loading_percent,
    )


def _violated(dso, flow: PowerFlowDetail) -> frozenset[str] | None:
    """The labels of the elements outside the network's limits (the limits ``flow`` was
    summarised against: the DSO's physical ones), from the same :attr:`~.grid.powerflow.
    PowerFlowDetail.limit_check` its summary counted; None if it did not converge."""
    check = flow.limit_check
    return None if check is None else violated_elements(dso.network.net, check)
