"""Invariants of a market period, checked over its results tables (``--check``, and in tests).

Each check is one function over the period's rows that returns messages, one per violation:
an empty list means the invariant holds. They read the tables as recorded, so a
check sees what a reader of the run folder would see, not a stage's internals. The model calls
:func:`check_period` after every period when checking is on; a violation is a logged error and
an ``invariant_violated`` event, never an exception, so that one run shows every violation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from market_sim.types import DOWN, UP, signed_mw

#: Slack of the volume checks (MW): the LP solver's feasibility tolerance, with margin.
MW_TOL = 1e-6
#: Slack of the money checks (EUR per MWh of service): the clearing's tie-break cost and the
#: solver's dual tolerance shift prices by less than this.
PRICE_TOL = 1e-4


@dataclass(frozen=True)
class PeriodTables:
    """The rows of one period that the invariants read (without the period column).

    ``need_mw`` and ``unserved_*_mw``: the TSO's total need and what its clearing left
    unserved (NaN if the clearing failed: the balance is then not checked);
    ``interface_shortfall_mw``: what DSOs could not dispatch of the TSO's aggregate, which
    the balance of the dispatch table may miss by.
    """

    hours: float
    bids: pd.DataFrame
    validation: pd.DataFrame
    dispatch: pd.DataFrame
    settlement: pd.DataFrame
    devices: pd.DataFrame
    need_mw: float
    unserved_up_mw: float
    unserved_down_mw: float
    interface_shortfall_mw: float = 0.0


def check_period(t: PeriodTables) -> list[str]:
    """Every invariant's violations in one period, each a one-line message."""
    return [
        *accepted_within_validated_within_offered(t.bids, t.validation, t.dispatch),
        *energy_balance(t.dispatch, t.need_mw, t.unserved_up_mw, t.unserved_down_mw,
                        t.interface_shortfall_mw),
        *zero_sum_settlement(t.settlement),
        *individual_rationality(t.dispatch, t.hours),
        *no_wash_trades(t.dispatch, t.bids),
        *energy_in_bounds(t.devices),
    ]  # fmt: skip


def accepted_within_validated_within_offered(
    bids: pd.DataFrame, validation: pd.DataFrame, dispatch: pd.DataFrame
) -> list[str]:
    """Per bid: dispatched (TSO and DSOs together) <= validated <= offered (MW). A bid nobody
    validated (the TSO-managed model validates only what it dispatches) is held to its offer."""
    offered = bids.set_index("bid_id").mw
    validated = validation.groupby("bid_id").validated_mw.min()
    der = dispatch[dispatch.resource == "der"]
    dispatched = der.groupby("id").mw.sum()
    out = [
        f"validated > offered: bid {b} validated {v:.6f} MW, offered {offered.get(b, 0.0):.6f} MW"
        for b, v in validated.items()
        if v > offered.get(b, 0.0) + MW_TOL
    ]
    limit = offered.copy()
    limit.loc[validated.index.intersection(limit.index)] = validated
    out += [
        f"dispatched > validated: bid {b} dispatched {d:.6f} MW, allowed {limit.get(b, 0.0):.6f} MW"
        for b, d in dispatched.items()
        if d > limit.get(b, 0.0) + MW_TOL
    ]
    return out


def energy_balance(
    dispatch: pd.DataFrame,
    need_mw: float,
    unserved_up_mw: float,
    unserved_down_mw: float,
    interface_shortfall_mw: float = 0.0,
) -> list[str]:
    """What the TSO activated, up minus down, plus its unserved need up minus down, equals its
    need (the DC balance is lossless). Not checked when the clearing failed (NaN unserved)."""
    if not (np.isfinite(unserved_up_mw) and np.isfinite(unserved_down_mw)):
        return []
    tso = dispatch[dispatch.buyer == "tso"]
    covered = float(signed_mw(tso.direction, tso.mw).sum()) + unserved_up_mw - unserved_down_mw
    gap = covered - need_mw
    if abs(gap) <= MW_TOL * max(1.0, abs(need_mw)) + interface_shortfall_mw:
        return []
    return [f"energy balance: activated and unserved {covered:.6f} MW, need {need_mw:.6f} MW"]


def zero_sum_settlement(settlement: pd.DataFrame) -> list[str]:
    """Every payment has a payer and a payee: the period's amounts sum to zero."""
    total = float(settlement.amount_eur.sum())
    scale = float(settlement.amount_eur.abs().sum())
    if abs(total) <= 1e-9 * max(1.0, scale):
        return []
    return [f"settlement not zero-sum: amounts sum to {total:.6f} EUR"]


def individual_rationality(dispatch: pd.DataFrame, hours: float) -> list[str]:
    """No accepted resource is paid less than its ask for the service it was dispatched for
    (payment >= ask x MWh; a down offer's ask may be negative: a generator that saves fuel)."""
    ask = dispatch.bid_price_eur_per_mwh * dispatch.mw * hours
    short = dispatch.payment_eur < ask - PRICE_TOL * dispatch.mw * hours
    return [
        f"individual rationality: {r.resource} {r.id} ({r.direction}, {r.mw:.6f} MW, ask "
        f"{r.bid_price_eur_per_mwh:.4f} EUR/MWh) paid {r.payment_eur:.6f} EUR, below its ask"
        for r in dispatch[short].itertuples()
    ]


def no_wash_trades(dispatch: pd.DataFrame, bids: pd.DataFrame) -> list[str]:
    """No device is activated up and down in the same period (a generator by its element, a
    DER device by its DSO, element table and index): the two cancel and only move money."""
    ter = dispatch[dispatch.resource == "ter"].assign(device=lambda d: d.name)
    where = bids.set_index("bid_id")
    der = dispatch[dispatch.resource == "der"]
    der = der.assign(
        device=der.dso
        + " "
        + der.id.map(where.element).astype(str)
        + " "
        + der.id.map(where.element_index).astype(str)
    )
    both = pd.concat([ter, der])
    both = both[both.mw > MW_TOL]
    both_ways = both.groupby("device").direction.agg(lambda d: {UP, DOWN} <= set(d))
    return [f"wash trade: {device} activated up and down" for device in both_ways[both_ways].index]


def energy_in_bounds(devices: pd.DataFrame) -> list[str]:
    """Every battery's state of charge (and a flexible load's shifted energy) stays within its
    bounds at the end of the period."""
    low = devices.energy_mwh < devices.min_mwh - MW_TOL
    high = devices.energy_mwh > devices.max_mwh + MW_TOL
    return [
        f"energy out of bounds: {r.dso} {r.element} {r.element_index} at {r.energy_mwh:.6f} MWh, "
        f"bounds [{r.min_mwh:.6f}, {r.max_mwh:.6f}]"
        for r in devices[low | high].itertuples()
    ]
