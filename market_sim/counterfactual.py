"""The neutral counterfactual of a conflicted DSO, measured side by side (issue 9).

Every period, for each DSO whose conflict-of-interest parameters are not neutral
(``dsos[i].conflict_of_interest``), the run also asks what a neutral validator (the network's
physical limits, no wear weight; same method, fairness and tap control) would have validated
of the same bids at the same forecast point. Nothing of it is dispatched: it is a what-if,
recorded in the ``counterfactual`` table and the ``withheld_*`` KPIs:

* volume withheld per direction: neutral validated MW minus the DSO's own (signed: the
  validation methods are heuristics, so a tighter limit may, rarely, validate a little more);
* the TSO cost it caused: the balancing problem solved twice as a what-if with every DSO's
  validated bids (:meth:`~market_sim.agents.tso.TSO.cost_with_all`), once with the DSO's own
  set, once with its neutral set instead (the others' as they validated); the difference of
  the objectives (resource cost at asks plus unserved energy at VOLL, no payments) over the
  period. It leaves out what the DSOs bought for their own needs and, in dso_managed, that
  the TSO clears aggregated curves (the same bids at the same interface bus);
* the aging the DSO avoided (:func:`aging_avoided_h`): its transformers' loss of life over the
  period with the neutral set fully activated minus with its own set, each from an AC power
  flow and the IEC 60076-7 thermal model of the wear stage (:mod:`market_sim.wear`).

In ``tso_managed`` no DSO validates, so there is no counterfactual; an independent DSO is
neutral by construction and has none either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from market_sim.agents.dso import DSO, validated_bids
from market_sim.agents.tso import TSO
from market_sim.coordination.period import PeriodInputs, PeriodOutcome
from market_sim.grid.aging import ThermalState
from market_sim.grid.injections import apply_bids
from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.tables import COUNTERFACTUAL_KPIS, column_dtypes
from market_sim.types import DIRECTIONS, Injections, ValidationResult
from market_sim.wear import age_transformers, ambient_c, in_service

Timer = Callable[..., Any]


@dataclass(frozen=True)
class Thermal:
    """Where the period's transformer aging starts: each network's thermal state after the
    last delivery (the run state's; none yet: the steady state of the loading), the hour of
    the day (the period's middle, for the ambient) and the period's length."""

    states: Mapping[str, ThermalState]
    hour_of_day: float
    minutes: float


def counterfactual_rows(
    dsos: Mapping[str, DSO],
    tso: TSO,
    inputs: PeriodInputs,
    outcome: PeriodOutcome,
    thermal: Thermal,
    timed: Timer,
) -> pd.DataFrame:
    """One ``counterfactual`` row per conflicted DSO that validated this period (no period
    column); ``timed(role, stage, func, *args)`` records the work under stage
    ``counterfactual``."""
    validation = outcome.validation
    conflicted = [n for n, d in dsos.items() if d.conflicted and (validation.validator == n).any()]
    if not conflicted:
        return empty_counterfactual()
    own = _validated_by_all(validation, inputs.bids)
    rows = [_dso_row(dsos[name], tso, inputs, outcome, own, thermal, timed) for name in conflicted]
    return pd.DataFrame(rows).astype(column_dtypes("counterfactual"))


def _dso_row(
    dso: DSO,
    tso: TSO,
    inputs: PeriodInputs,
    outcome: PeriodOutcome,
    own: pd.DataFrame,
    thermal: Thermal,
    timed: Timer,
) -> dict[str, Any]:
    """One conflicted DSO's row: its neutral validation of the bids it validated, the TSO's
    two what-if clearings and the aging avoided (``own``: every DSO's own validated bids)."""
    name, validation = dso.name, outcome.validation
    seen = inputs.bids[inputs.bids.bid_id.isin(validation.bid_id[validation.validator == name])]
    seen = seen.reset_index(drop=True)
    neutral = timed(name, "counterfactual", dso.validate_neutral, seen, inputs.forecasts[name])
    neutral_set = validated_bids(seen, neutral)
    mine = own[own.dso == name]
    with_neutral = pd.concat([own[own.dso != name], neutral_set], ignore_index=True)
    costs = timed("tso", "counterfactual", _what_if_costs, tso, inputs, own, with_neutral)
    row = _row(name, mine, neutral, seen, costs, thermal.minutes / 60)
    points = (dso.operating_point(inputs.forecasts[name], neutral), outcome.operating_points[name])
    row["aging_avoided_h"] = timed(
        name, "counterfactual", aging_avoided_h, dso, points, (neutral_set, mine), thermal
    )
    return row


def aging_avoided_h(
    dso: DSO,
    points: tuple[Injections, Injections],
    sets: tuple[pd.DataFrame, pd.DataFrame],
    thermal: Thermal,
) -> float:
    """Transformer loss of life (h, summed over the network's transformers) in this period
    with the neutral validated set fully activated, minus with the DSO's own set; each at its
    own operating point (``points``: the taps each validation chose), from the thermal state
    the period starts with, at the period's ambient (the DSO's ``aging`` config).

    What it approximates: the wear the DSO's caution protects its transformers from if the
    TSO used everything validated, in this period only. A set is activated one direction at a
    time (up and down are never dispatched together) and counts with its worse direction; the
    TSO dispatches only part of a set, and later periods follow the delivered thermal state,
    so it is an upper bound of the period's avoided aging, not the realised difference. NaN
    where a power flow did not converge.
    """
    neutral, own = (
        _loss_of_life_h(dso, point, validated, thermal)
        for point, validated in zip(points, sets, strict=True)
    )
    return neutral - own


def _loss_of_life_h(
    dso: DSO, point: Injections, validated: pd.DataFrame, thermal: Thermal
) -> float:
    """The larger of the two directions' transformer loss of life with every validated bid
    of that direction activated at ``point``."""
    cfg = dso.config.aging
    ambient = ambient_c(cfg, thermal.hour_of_day)
    worst = 0.0
    for direction in DIRECTIONS:
        injections = apply_bids(dso.network, point, validated[validated.direction == direction])
        flow = run_power_flow_detailed(dso.network, injections, dso.limits, write=False)
        if not flow.result.converged:
            return float("nan")
        load = in_service(dso.network.net.trafo, flow.trafo_loading_percent) / 100.0
        state = thermal.states.get(dso.name)
        _, columns = age_transformers(load, state, cfg, ambient, thermal.minutes)
        worst = max(worst, float(np.nansum(columns["loss_of_life_h"])))
    return worst


def period_kpis(rows: pd.DataFrame) -> dict[str, float]:
    """The counterfactual's KPIs of a period: sums over the conflicted DSOs (0 without; NaN
    where a what-if clearing or power flow failed): numpy's sum of each column, the additions
    of ``Series.sum(skipna=False)`` without its cost per column (most periods have no rows)."""
    if rows.empty:
        return dict.fromkeys(COUNTERFACTUAL_KPIS, 0.0)
    return {name: float(np.sum(rows[name].to_numpy(float))) for name in COUNTERFACTUAL_KPIS}


#: A ``counterfactual`` table with no rows, built once: most periods of most runs have none,
#: and building a table of its 15 columns costs more than the rest of the stage.
_NO_ROWS = pd.DataFrame({c: pd.Series(dtype=t) for c, t in column_dtypes("counterfactual").items()})


def empty_counterfactual() -> pd.DataFrame:
    return _NO_ROWS.copy()


def _validated_by_all(validation: pd.DataFrame, bids: pd.DataFrame) -> pd.DataFrame:
    """Every DSO-validated bid with ``mw`` its validated MW (what the TSO could have used)."""
    mw = validation.groupby("bid_id").validated_mw.sum()
    table = bids[bids.bid_id.isin(mw.index)]
    table = table.assign(mw=mw.reindex(table.bid_id).to_numpy(float))
    return table[table.mw > 1e-9].reset_index(drop=True)


def _what_if_costs(
    tso: TSO, inputs: PeriodInputs, own: pd.DataFrame, neutral: pd.DataFrame
) -> tuple[float, float]:
    """The balancing objective (EUR/h) with the DSOs' own validated sets and with one DSO's
    neutral set instead (NaN where that clearing fails)."""
    return tso.cost_with_all(inputs.plan, own), tso.cost_with_all(inputs.plan, neutral)


def _row(
    name: str,
    own: pd.DataFrame,
    neutral: ValidationResult,
    seen: pd.DataFrame,
    costs: tuple[float, float],
    hours: float,
) -> dict[str, Any]:
    direction = seen.set_index("bid_id").direction
    neutral_mw = neutral.table.assign(direction=neutral.table.bid_id.map(direction))
    row: dict[str, Any] = {"dso": name}
    for d in DIRECTIONS:
        mine = float(own.mw[own.direction == d].sum())
        theirs = float(neutral_mw.validated_mw[neutral_mw.direction == d].sum())
        row |= {f"validated_{d}_mw": mine, f"neutral_{d}_mw": theirs}
        row[f"withheld_{d}_mw"] = theirs - mine
    row["withheld_mwh"] = (row["withheld_up_mw"] + row["withheld_down_mw"]) * hours
    row["neutral_converged"] = bool(neutral.converged)
    row["tso_cost_eur_per_h"], row["neutral_tso_cost_eur_per_h"] = costs
    row["withheld_tso_cost_eur"] = (costs[0] - costs[1]) * hours
    return row
