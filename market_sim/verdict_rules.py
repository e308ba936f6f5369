"""Verdict rules for the measured Table I: each states its sentence and applies it.

Rules are data: the sentence printed in the table and the function that applies it to the
measures table (index: model, columns: measures) are made together by the factories below, so
a table cannot state one rule and apply another. A rule whose measure is absent from the runs
(a KPI another release adds, a model not run) or whose precondition fails on the scenario (no
DER offered, no DSO withholding anything, power flows that did not converge) raises
:class:`Unmeasurable` with the reason: the verdict is "not measurable on this scenario", never a
made-up figure. Rules compare the three core models; variants are shown beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_MEASURABLE = "not measurable on this scenario"
VERDICTS = (SUPPORTED, CONTRADICTED, NOT_MEASURABLE)

TSO, HYBRID, DSO = "tso_managed", "hybrid", "dso_managed"
CORE = (TSO, HYBRID, DSO)


class Unmeasurable(Exception):
    """Raised inside a rule: the verdict is NOT_MEASURABLE, the message its reason."""


@dataclass(frozen=True)
class Rule:
    """A verdict rule: the sentence the table states and the function that applies it to the
    measures table (index: model, columns: measures), returning (verdict, reason)."""

    text: str
    columns: tuple[str, ...]
    judge: Callable[[pd.DataFrame], tuple[str, str]]


def value(measures: pd.DataFrame, model: str, column: str) -> float:
    """One figure of the measures table; Unmeasurable if the run or the KPI is missing."""
    if model not in measures.index:
        raise Unmeasurable(f"{model} was not run")
    if column not in measures.columns:
        raise Unmeasurable(f"KPI {column} is absent from the runs")
    if pd.isna(measures.at[model, column]):
        raise Unmeasurable(f"KPI {column} has no figure for {model} (absent, or NaN in a period)")
    return float(measures.at[model, column])


def _pct(by: float) -> str:
    return f"{by:.0%}" if by >= 0.01 else f"{by:.1%}"


def _verdict(holds: bool, figures: str) -> tuple[str, str]:
    return (SUPPORTED if holds else CONTRADICTED), figures


# -- rule factories ---------------------------------------------------------------------------
def ratio_rule(
    model: str, column: str, label: str, others: tuple[str, ...], by: float, more: bool
) -> Rule:
    """``model``'s figure exceeds (``more``) or falls below every one of ``others`` by more
    than the share ``by`` (0: strictly)."""
    verb = "exceeds" if more else "is below"
    margin = f" by more than {_pct(by)}" if by > 0 else ""
    whom = (
        "each other core model's"
        if others == tuple(m for m in CORE if m != model)
        else (" and ".join(f"{o}'s" for o in others))
    )
    text = f"supported if {model}'s {label} {verb} {whom}{margin}; contradicted otherwise"

    def judge(measures: pd.DataFrame) -> tuple[str, str]:
        mine = value(measures, model, column)
        theirs = {o: value(measures, o, column) for o in others}
        if more:
            holds = all(mine > v * (1 + by) and mine > v for v in theirs.values())
        else:
            holds = all(mine < v * (1 - by) and mine < v for v in theirs.values())
        rel = ", ".join(f"{o} {_relative(mine, v)}" for o, v in theirs.items())
        return _verdict(holds, f"{model} against {rel}")

    return Rule(text, (column,), judge)


def _relative(mine: float, theirs: float) -> str:
    if theirs == 0:
        return "0 (no ratio)" if mine else "equal (both 0)"
    return f"{mine / theirs - 1:+.1%}"


def _dominates(m: pd.DataFrame, better: str, worse: str, columns: tuple[str, ...], tol: float):
    """``better`` is higher than ``worse`` by more than ``tol`` in at least one column and
    lower by more than ``tol`` in none (per direction: up and down are never added)."""
    pairs = [(value(m, better, c), value(m, worse, c)) for c in columns]
    higher = any(b > w * (1 + tol) + 1e-9 for b, w in pairs)
    lower = any(b < w * (1 - tol) - 1e-9 for b, w in pairs)
    return higher and not lower


def _offered(measures: pd.DataFrame, models: tuple[str, ...]) -> None:
    for model in models:
        offered = sum(value(measures, model, f"der_offered_{d}_mwh") for d in ("up", "down"))
        if offered <= 0:
            raise Unmeasurable(f"no DER offered anything under {model}")


def facilitation_rule(model: str, stage: str, mode: str, tol: float = 0.01) -> Rule:
    """DER volume of ``stage`` (validated, dispatched) up and down apart. ``mode``: "less"
    (every other core model dominates ``model``), "more" (``model`` dominates tso_managed),
    "most" (no other core model is higher by more than ``tol`` in either direction)."""
    columns = (f"der_{stage}_up_mwh", f"der_{stage}_down_mwh")
    others = tuple(m for m in CORE if m != model)
    what = f"DER volume {stage}"
    tol_s = _pct(tol)
    text = {
        "less": f"supported if each other core model's {what} is higher than {model}'s by more "
        f"than {tol_s} in one direction and lower by more than {tol_s} in neither",
        "more": f"supported if {model}'s {what} is higher than {TSO}'s by more than {tol_s} in "
        f"one direction and lower by more than {tol_s} in neither",
        "most": f"supported if no other core model's {what} is higher than {model}'s by more "
        f"than {tol_s} in either direction",
    }[mode] + "; contradicted otherwise"

    def judge(m: pd.DataFrame) -> tuple[str, str]:
        _offered(m, CORE if mode != "more" else (model, TSO))
        if mode == "less":
            holds = all(_dominates(m, o, model, columns, tol) for o in others)
        elif mode == "more":
            holds = _dominates(m, model, TSO, columns, tol)
        else:
            holds = not any(
                value(m, o, c) > value(m, model, c) * (1 + tol) + 1e-9
                for o in others
                for c in columns
            )
        shown = (model, TSO) if mode == "more" else CORE
        figures = "; ".join(
            f"{o} up {value(m, o, columns[0]):,.1f} / down {value(m, o, columns[1]):,.1f} MWh"
            for o in shown
        )
        return _verdict(holds, figures)

    return Rule(text, columns, judge)


def violations_rule(model: str, column: str, label: str, versus: tuple[str, ...], by: float,
                    more: bool) -> Rule:  # fmt: skip
    """A violation count compared as :func:`ratio_rule`, measurable only where every delivery
    power flow converged (elsewhere the counts are unknown, not zero)."""
    inner = ratio_rule(model, column, label, versus, by, more)

    def judge(m: pd.DataFrame) -> tuple[str, str]:
        for o in (model, *versus):
            if value(m, o, "nonconverged_power_flows") > 0:
                raise Unmeasurable(f"delivery power flows did not converge under {o}")
        return inner.judge(m)

    text = inner.text.replace(
        "; contradicted", " (every delivery power flow converged); contradicted"
    )
    return Rule(text, (column, "baseline_violations"), judge)


def lowest_rule(model: str, column: str, label: str, tol: float) -> Rule:
    """No other core model's figure is below ``model``'s by more than the share ``tol``."""
    others = tuple(m for m in CORE if m != model)
    text = (
        f"supported if no other core model's {label} is below {model}'s by more than "
        f"{_pct(tol)}; contradicted otherwise"
    )

    def judge(measures: pd.DataFrame) -> tuple[str, str]:
        mine = value(measures, model, column)
        theirs = {o: value(measures, o, column) for o in others}
        holds = not any(v < mine * (1 - tol) for v in theirs.values())
        rel = ", ".join(f"{o} {_relative(v, mine)}" for o, v in theirs.items())
        return _verdict(holds, f"against {model}: {rel}")

    return Rule(text, (column,), judge)


def no_operational_data_rule(model: str) -> Rule:
    """``model`` ships no operational data (step 1b) where tso_managed does."""
    column = "operational_data_bytes"
    text = (
        f"supported if {model}'s DSOs send no operational data to the TSO while {TSO}'s do; "
        f"contradicted if they send some; not measurable if {TSO}'s send none either"
    )

    def judge(m: pd.DataFrame) -> tuple[str, str]:
        reference, mine = value(m, TSO, column), value(m, model, column)
        if reference <= 0:
            raise Unmeasurable(f"{TSO}'s DSOs sent no operational data either")
        return _verdict(mine == 0, f"{model} {mine:,.0f} bytes, {TSO} {reference:,.0f} bytes")

    return Rule(text, (column,), judge)


def _withholding(m: pd.DataFrame) -> dict[str, float]:
    """MWh withheld against a neutral validator per core model; Unmeasurable if nobody did."""
    withheld = {o: value(m, o, "withheld_mwh") for o in CORE}
    if not any(v > 0 for v in withheld.values()):
        raise Unmeasurable(
            "no DSO withheld anything a neutral validator would have let through (no DSO "
            "validates with conflict-of-interest limits on this scenario)"
        )
    return withheld


def conflict_rule(model: str) -> Rule:
    """The DSOs of ``model`` withhold services that cost the TSO (and save them asset aging,
    where the runs measure it: the aging KPI may be missing while the withheld ones are not)."""
    columns = ("withheld_mwh", "withheld_tso_cost_eur", "aging_avoided_h")
    text = (
        f"supported if {model}'s DSOs withhold DER volume a neutral validator (iDSO) lets through, "
        "at a cost to the TSO, and (where the runs measure it) avoid transformer aging by it; "
        "contradicted if they withhold volume at no cost to the TSO or with no aging avoided; "
        "not measurable if no DSO withholds anything"
    )

    def judge(m: pd.DataFrame) -> tuple[str, str]:
        _withholding(m)
        withheld, cost = (value(m, model, c) for c in columns[:2])
        if withheld <= 0:
            raise Unmeasurable(f"{model}'s DSOs withheld nothing")
        try:
            aging: float | None = value(m, model, columns[2])
        except Unmeasurable:
            aging = None
        figures = f"{withheld:,.1f} MWh withheld, {cost:,.0f} EUR to the TSO, " + (
            "aging not measured" if aging is None else f"{aging:,.2f} h aging avoided"
        )
        return _verdict(cost > 0 and (aging is None or aging > 0), figures)

    return Rule(text, columns, judge)


def no_conflict_rule() -> Rule:
    """tso_managed withholds nothing where the DSO-validating models do."""
    text = (
        f"supported if {TSO} withholds no DER volume against a neutral validator while another "
        f"core model's DSOs do (transformer loss of life shown beside); contradicted if {TSO} "
        "withholds some; not measurable if no model withholds anything"
    )

    def judge(m: pd.DataFrame) -> tuple[str, str]:
        withheld = _withholding(m)
        figures = ", ".join(f"{o} {v:,.1f} MWh" for o, v in withheld.items())
        return _verdict(withheld[TSO] <= 0, figures)

    return Rule(text, ("withheld_mwh", "trafo_loss_of_life_h"), judge)


def not_modelled(why: str) -> Rule:
    """A claim about a quality the simulation gives every operator equally: no figure can
    support or contradict it, whatever the scenario."""
    text = f"not measurable by construction: {why}"

    def judge(measures: pd.DataFrame) -> tuple[str, str]:
        raise Unmeasurable(why)

    return Rule(text, (), judge)


def all_of(*rules: Rule) -> Rule:
    """Supported if every rule is; not measurable if any is; contradicted otherwise."""
    parts = [r.text.removesuffix("; contradicted otherwise") for r in rules]
    text = " and ".join([parts[0], *(p.removeprefix("supported if ") for p in parts[1:])])

    def judge(m: pd.DataFrame) -> tuple[str, str]:
        results = [r.judge(m) for r in rules]
        holds = all(v == SUPPORTED for v, _ in results)
        return _verdict(holds, "; ".join(why for _, why in results))

    columns = tuple(dict.fromkeys(c for r in rules for c in r.columns))
    return Rule(text + "; contradicted otherwise", columns, judge)
