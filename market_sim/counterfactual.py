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

In ``tso_managed`` no DSO validates, so there is no counterfactual; an independent DSO is
neutral by construction and has none either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from market_sim.agents.dso import DSO, validated_bids
from market_sim.agents.tso import TSO
from market_sim.coordination.period import PeriodInputs, PeriodOutcome
from market_sim.tables import WITHHELD_KPIS, column_dtypes
from market_sim.types import DIRECTIONS, ValidationResult

Timer = Callable[..., Any]


def counterfactual_rows(
    dsos: Mapping[str, DSO],
    tso: TSO,
    inputs: PeriodInputs,
    outcome: PeriodOutcome,
    hours: float,
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
    rows = []
    for name in conflicted:
        dso = dsos[name]
        seen = inputs.bids[inputs.bids.bid_id.isin(validation.bid_id[validation.validator == name])]
        seen = seen.reset_index(drop=True)
        neutral = timed(name, "counterfactual", dso.validate_neutral, seen, inputs.forecasts[name])
        neutral_set = validated_bids(seen, neutral)
        with_neutral = pd.concat([own[own.dso != name], neutral_set], ignore_index=True)
        costs = timed("tso", "counterfactual", _what_if_costs, tso, inputs, own, with_neutral)
        rows.append(_row(name, own[own.dso == name], neutral, seen, costs, hours))
    return pd.DataFrame(rows).astype(column_dtypes("counterfactual"))


def period_kpis(rows: pd.DataFrame) -> dict[str, float]:
    """The ``withheld_*`` KPIs of a period: sums over the conflicted DSOs (0 without; NaN
    where a what-if clearing failed)."""
    return {name: float(rows[name].sum(skipna=False)) for name in WITHHELD_KPIS}


def empty_counterfactual() -> pd.DataFrame:
    dtypes = column_dtypes("counterfactual")
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


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
