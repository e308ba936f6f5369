"""Key performance indicators of a period, and the side-by-side summary of runs.

Efficiency and transfers are kept apart. A model's efficiency is its *resource cost*: what the
resources it activated cost at their own asks, plus the energy schedule, plus the energy that
nobody delivered (unserved need at VOLL, and a DER's undelivered energy at the price of covering
it). Payments between TSO, DSOs, aggregators, prosumers and generators are *transfers*: they sum
to zero and say who gains, not how efficient the model is. Every KPI's unit and meaning is
declared once in :data:`market_sim.tables.KPIS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from market_sim.columns import Columns, numbers, positions, text
from market_sim.markets.group_sum import group_sum
from market_sim.markets.settlement import prices_at
from market_sim.tables import COUNTERFACTUAL_KPIS, KPIS
from market_sim.types import DOWN, UP, PowerFlowResult, signed_mw
from market_sim.wear import Wear

#: The parties of the settlement, by role (the ``role`` column of ``settlement``).
ROLES = ("tso", "dso", "aggregator", "prosumer", "ter")
#: The after-delivery violation counts, one per element table.
VIOLATION_KPIS = ("voltage_violations", "line_violations", "trafo_violations")


@dataclass(frozen=True)
class NetworkCheck:
    """One DSO network's power flows of a period: after delivery and at the baseline (the
    operating point with no DER activated). ``*_violated``: labels of the elements outside
    limits, None where that power flow did not converge."""

    delivered: PowerFlowResult
    violated: frozenset[str] | None
    baseline: PowerFlowResult
    baseline_violated: frozenset[str] | None


def period_kpis(
    *,
    hours: float,
    need_mw: float,
    schedule_cost_eur_per_h: float,
    schedule_below_min_mw: float = 0.0,
    bids: pd.DataFrame,
    validation: pd.DataFrame,
    dispatch: Columns,
    settlement: Columns,
    bus_price: pd.Series,
    unserved_mw: float,
    voll_eur_per_mwh: float,
    grid: Mapping[str, NetworkCheck],
    messages: Mapping[str, Sequence],
    reserve_shortfall_mw: float = 0.0,
    priority_effects: dict[str, float] | None = None,
    wear: Mapping[str, Wear] | None = None,
    baseline_wear: Mapping[str, Wear] | None = None,
    withheld: Mapping[str, float] | None = None,
) -> list[tuple[str, float, str]]:
    """(name, value, unit) of every KPI of one period, in the order of :data:`KPIS`.

    ``dispatch`` and ``settlement``: the period's tables, or their columns as arrays.
    ``bus_price``: the balancing price per transmission bus (EUR/MWh, NaN if the clearing
    failed), at which a DER's undelivered energy is covered. ``wear`` and ``baseline_wear``:
    each DSO network's asset wear after delivery and at the baseline (none given: no assets
    counted). ``withheld``: the KPIs of the conflicted DSOs' counterfactual (withheld volume,
    its TSO cost, aging avoided: :mod:`market_sim.counterfactual`), 0 without.
    """
    effects = priority_effects or {}
    values = {
        "need_mw": need_mw,
        **volumes(bids, validation, dispatch, hours),
        "unserved_mwh": unserved_mw * hours,
        "schedule_below_min_mw": schedule_below_min_mw,
        **resource_cost(
            dispatch,
            bus_price,
            schedule_cost_eur_per_h * hours,
            unserved_mw * hours,
            voll_eur_per_mwh,
            hours,
        ),  # fmt: skip
        **party_kpis(dispatch, settlement, hours),
        "imbalance_charges_eur": _total(numbers(dispatch, "imbalance_eur")),
        "reserve_shortfall_mw": reserve_shortfall_mw,
        "priority_tso_extra_cost_eur": effects.get("tso_extra_cost_eur_per_h", 0.0) * hours,
        "priority_dso_shortfall_mw": effects.get("dso_shortfall_mw", 0.0),
        **violation_kpis(grid),
        **wear_kpis(wear or {}, baseline_wear or {}),
        "interface_deviation_mw": interface_deviation(grid, dispatch),
        **{name: 0.0 for name in COUNTERFACTUAL_KPIS},
        **(withheld or {}),
        **message_kpis(messages),
    }
    missing = set(KPIS) ^ set(values)
    if missing:
        raise KeyError(f"KPIs computed and KPIs declared in market_sim.tables differ: {missing}")
    return [(name, float(values[name]), unit) for name, (unit, _) in KPIS.items()]


def volumes(
    bids: pd.DataFrame, validation: pd.DataFrame, dispatch: Columns, hours: float
) -> dict[str, float]:
    """DER energy offered, validated, dispatched and delivered, and TER energy activated, per
    direction (MWh): up and down of one device are two services, never added together.

    A validated bid's direction is its bid's, so the validated rows of a direction are read
    from the bids' rows of it, at each validated bid's place in the book, without comparing
    the directions' text again."""
    offered = _by_direction(text(bids, "direction"))
    at = positions(numbers(bids, "bid_id", np.int64), numbers(validation, "bid_id", np.int64))
    resource = text(dispatch, "resource")
    der, ter = resource == "der", resource == "ter"
    dispatched = _by_direction(text(dispatch, "direction"))
    mw, delivered = numbers(dispatch, "mw"), numbers(dispatch, "delivered_mw")
    der_rows = {d: rows & der for d, rows in dispatched.items()}
    stages = {  # (the rows of each direction, MW of each row) of the stage
        "der_offered": (offered, numbers(bids, "mw")),
        "der_validated": (_rows_at(offered, at), numbers(validation, "validated_mw")),
        "der_dispatched": (der_rows, mw),
        "der_delivered": (der_rows, delivered),
        "ter_activated": ({d: rows & ter for d, rows in dispatched.items()}, mw),
    }
    out = {}
    for stage, (rows, table_mw) in stages.items():
        for d in (UP, DOWN):
            out[f"{stage}_{d}_mwh"] = _total(table_mw[rows[d]]) * hours
    bought = text(dispatch, "buyer")[der] != "tso"
    out["dso_purchased_mwh"] = _total(mw[der][bought]) * hours
    return out


def _total(values: np.ndarray) -> float:
    """Sum skipping NaN, as ``Series.sum()`` adds (the same additions, in the same order):
    the plain sum, which is NaN only where a value is NaN (or infinities of both signs meet,
    whose sum is NaN either way), else ``np.nansum``'s sum of the values with NaN as 0.0.
    Most of the twenty columns a period sums have no NaN: a scan for it cost as much as the
    sum."""
    values = np.asarray(values, dtype=float)
    total = values.sum()
    if math.isnan(total):
        total = np.where(np.isnan(values), 0.0, values).sum()
    return float(total)


def _by_direction(direction: np.ndarray) -> dict[str, np.ndarray]:
    """Which rows of a ``direction`` column are of each direction (a row of neither, none)."""
    return {d: direction == d for d in (UP, DOWN)}


def _rows_at(rows: dict[str, np.ndarray], at: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of each direction read at positions ``at`` of a table (-1: not in it, of neither
    direction)."""
    found = at >= 0
    out = {}
    for d, of_d in rows.items():
        out[d] = np.zeros(len(at), dtype=bool)
        out[d][found] = of_d[at[found]]
    return out


def _sums_by(keys: np.ndarray, values: np.ndarray) -> dict:
    """Sum of ``values`` per key (rows of a missing key left out), added as pandas' groupby
    adds them (:func:`~market_sim.markets.group_sum.group_sum`), which the KPIs have always
    used: a plain sum may differ in the last bit.

    A key's code is its place among the keys in order of appearance, found in a dict: a
    period's few hundred rows name a handful of roles or DSOs, where a factorization costs
    more in pandas' dispatch than in hashing. A missing key is found among these few names,
    not row by row. Each group is summed in row order whatever its code, so the sums are the
    same."""
    rows = keys.tolist()
    code = {name: i for i, name in enumerate(dict.fromkeys(rows))}
    codes = np.fromiter(map(code.__getitem__, rows), np.int64, len(rows))
    values = np.asarray(values, float)
    missing = [i for name, i in code.items() if pd.isna(name)]
    if missing:
        known = ~np.isin(codes, missing)
        codes, values = codes[known], values[known]
    group, total = group_sum(codes, values)
    names = list(code)
    return dict(zip([names[g] for g in group.tolist()], total.tolist(), strict=True))


def resource_cost(
    dispatch: Columns,
    bus_price: pd.Series,
    schedule_cost_eur: float,
    unserved_mwh: float,
    voll_eur_per_mwh: float,
    hours: float,
) -> dict[str, float]:
    """The efficiency measure of a period (EUR), and its parts.

    Activation is costed at each resource's ask times the energy it *delivered*: the cost of
    an activation that did not happen is not incurred. The energy a DER did not deliver is
    covered by someone else (the system's reserves), at the magnitude of the balancing price at
    its bus, the marginal cost of covering it (VOLL in scarcity, and VOLL where the balancing
    market has no price: nobody covers it). So a DER that fails to deliver never lowers the
    resource cost: what it saves at its ask, at least that much is spent covering for it.
    """
    bid_price = numbers(dispatch, "bid_price_eur_per_mwh")
    mw, delivered = numbers(dispatch, "mw"), numbers(dispatch, "delivered_mw")
    activation = _total(bid_price * delivered) * hours
    short = mw - delivered
    undelivered = np.where(short < 0.0, 0.0, short)  # NaN kept, as Series.clip keeps it
    price = np.abs(prices_at(bus_price, numbers(dispatch, "bus", np.int64)))
    cover = float((undelivered * np.where(np.isnan(price), voll_eur_per_mwh, price)).sum())
    parts = {
        "schedule_cost_eur": schedule_cost_eur,
        "activation_cost_eur": activation,
        "undelivered_cover_cost_eur": cover * hours,
        "unserved_cost_eur": unserved_mwh * voll_eur_per_mwh,
    }
    return {"resource_cost_eur": sum(parts.values()), **parts}


def party_kpis(dispatch: Columns, settlement: Columns, hours: float) -> dict[str, float]:
    """Payments received per role (EUR, net of what it paid: transfers that sum to zero) and
    surplus per role: payments less the cost, at their asks, of what its resources delivered
    (TER: generators, prosumer: DER; the TSO, DSOs and aggregators own none here)."""
    paid = _sums_by(text(settlement, "role"), numbers(settlement, "amount_eur"))
    bid_price = numbers(dispatch, "bid_price_eur_per_mwh")
    delivered_cost = bid_price * numbers(dispatch, "delivered_mw") * hours
    # a TER's resources are the generator's, a DER's its prosumer's
    owner = np.where(text(dispatch, "resource") == "ter", "ter", "prosumer")
    own = _sums_by(owner, delivered_cost)
    out = {f"payments_{r}_eur": float(paid.get(r, 0.0)) for r in ROLES}
    out |= {f"surplus_{r}_eur": float(paid.get(r, 0.0) - own.get(r, 0.0)) for r in ROLES}
    return out


def violation_kpis(grid: Mapping[str, NetworkCheck]) -> dict[str, float]:
    """Violations after delivery per element table, split into those present at the baseline
    (no DER activated) and those the activation caused, element by element. A network whose
    power flow did not converge is left out of the counts, never counted as 0 violations; the
    non-converged power flows are counted instead."""
    after = [c.delivered for c in grid.values() if c.delivered.converged]
    both = [c for c in grid.values() if c.violated is not None and c.baseline_violated is not None]
    return {
        "voltage_violations": float(sum(g.n_voltage_violations for g in after)),
        "line_violations": float(sum(g.n_line_violations for g in after)),
        "trafo_violations": float(sum(g.n_trafo_violations for g in after)),
        "baseline_violations": float(sum(len(c.baseline_violated) for c in both)),
        "der_caused_violations": float(sum(len(c.violated - c.baseline_violated) for c in both)),
        "nonconverged_power_flows": float(sum(not c.delivered.converged for c in grid.values())),
        "baseline_nonconverged_power_flows": float(
            sum(not c.baseline.converged for c in grid.values())
        ),
    }


def wear_kpis(wear: Mapping[str, Wear], baseline_wear: Mapping[str, Wear]) -> dict[str, float]:
    """Transformer hot spot and loss of life, after delivery and at the baseline, and the
    line-hours above the two loading thresholds, over the DSOs' networks."""
    spots = [s for s in (w.hot_spot_max_c for w in wear.values()) if np.isfinite(s)]
    return {
        "trafo_hot_spot_max_c": max(spots) if spots else np.nan,
        "trafo_loss_of_life_h": sum(w.loss_of_life_h for w in wear.values()),
        "baseline_trafo_loss_of_life_h": sum(w.loss_of_life_h for w in baseline_wear.values()),
        "line_hours_above_80pct": sum(w.line_hours_above[0] for w in wear.values()),
        "line_hours_above_100pct": sum(w.line_hours_above[1] for w in wear.values()),
    }


def interface_deviation(grid: Mapping[str, NetworkCheck], dispatch: Columns) -> float:
    """Sum over DSOs of |interface change - DER dispatched in the area| (MW): how far the
    interfaces really moved from what was dispatched behind them (undelivered DER, and the
    change of the network's losses), from the delivery and the baseline power flows."""
    der = text(dispatch, "resource") == "der"
    mw = signed_mw(text(dispatch, "direction")[der], numbers(dispatch, "mw")[der])
    signed = _sums_by(text(dispatch, "dso")[der], mw)
    total = 0.0
    for name, c in grid.items():
        moved = c.delivered.interface_p_mw - c.baseline.interface_p_mw
        if np.isfinite(moved):
            total += abs(moved - float(signed.get(name, 0.0)))
    return total


def message_kpis(messages: Mapping[str, Sequence]) -> dict[str, float]:
    """Messages between agents (steps inside one agent excluded), their bytes, and how many
    arrived after their gate closed (rejected). ``messages``: the columns sender, receiver,
    bytes and late of the period's log rows (a ``messages`` table, or a mapping of columns:
    the record stage does not build a DataFrame for three sums)."""
    external = np.asarray(messages["sender"], object) != np.asarray(messages["receiver"], object)
    return {
        "messages": float(external.sum()),
        "message_bytes": float(np.asarray(messages["bytes"])[external].sum()),
        "late_messages": float(np.asarray(messages["late"])[external].sum()),
    }


def summary(tables: dict[str, pd.DataFrame], hours: float) -> dict[str, float]:
    """One run in a few numbers: totals over all periods, efficiency first, then transfers,
    volumes per direction, violations, data and the TSO's computing burden."""
    kpis, timings = tables["kpis"], tables["timings"]
    total = kpis.pivot_table(index="period", columns="name", values="value").sum()
    tso_time = timings[timings.role == "tso"].seconds.sum()
    dso_roles = set(tables["grid"].dso)
    dso_time = timings[timings.role.isin(dso_roles)].seconds.sum()
    per_period = kpis[kpis.name.isin(VIOLATION_KPIS)].groupby("period").value.sum()
    out = {
        "resource cost (EUR)": total["resource_cost_eur"],
        "  schedule (EUR)": total["schedule_cost_eur"],
        "  activation at asks (EUR)": total["activation_cost_eur"],
        "  undelivered, covered (EUR)": total["undelivered_cover_cost_eur"],
        "  unserved at VOLL (EUR)": total["unserved_cost_eur"],
        "unserved energy (MWh)": total["unserved_mwh"],
    }
    out |= {f"transfers: {r} receives (EUR)": total[f"payments_{r}_eur"] for r in ROLES}
    out |= {f"surplus: {r} (EUR)": total[f"surplus_{r}_eur"] for r in ("prosumer", "ter")}
    for stage in ("offered", "validated", "dispatched", "delivered"):
        for d in (UP, DOWN):
            out[f"DER {stage} {d} (MWh)"] = total[f"der_{stage}_{d}_mwh"]
    out |= {
        "violations after delivery": total[list(VIOLATION_KPIS)].sum(),
        "  baseline (no DER activated)": total["baseline_violations"],
        "  DER-caused": total["der_caused_violations"],
        "periods with violations": float((per_period > 0).sum()),
        # a power flow that did not converge says nothing about violations: its network is
        # left out of the counts above and the number of such flows is shown beside them
        "non-converged power flows": total["nonconverged_power_flows"],
        "  baseline power flows not converged": total["baseline_nonconverged_power_flows"],
        "transformer hot spot, max (degC)": float(
            kpis.loc[kpis.name == "trafo_hot_spot_max_c", "value"].max()
        ),
        # in minutes: a day uses minutes of a transformer's life, shown to 0.1
        "transformer loss of life (min)": 60 * total["trafo_loss_of_life_h"],
        "  baseline (no DER activated) (min)": 60 * total["baseline_trafo_loss_of_life_h"],
        "line-hours above 80 % loading": total["line_hours_above_80pct"],
        "line-hours above 100 % loading": total["line_hours_above_100pct"],
        "interface deviation (MWh)": total["interface_deviation_mw"] * hours,
        "messages": total["messages"],
        "bytes": total["message_bytes"],
        "late messages": total["late_messages"],
        "TSO problem constraints (mean)": float(tables["clearing_runs"].n_constraints.mean()),
        "TSO compute (s)": float(tso_time),
        "DSO compute (s)": float(dso_time),
    }
    return out


def links(messages: pd.DataFrame) -> pd.DataFrame:
    """Messages and bytes per link (sender role -> receiver role), internal steps excluded."""
    external = messages[messages.sender != messages.receiver]
    link = external.sender_role + " -> " + external.receiver_role
    return (
        external.assign(link=link)
        .groupby("link")
        .agg(messages=("bytes", "size"), bytes=("bytes", "sum"))
        .reset_index()
    )
