"""The paper's Table I as claims that a comparison of runs supports or contradicts.

Each advantage or disadvantage the paper lists for a coordination model (Givisiez, Petrou and
Ochoa, PSCC 2020, Table I) is one :class:`Claim` or, where one measure cannot carry it, several
(e.g. "less efficient facilitation of DER services": volume validated, volume dispatched and
resource cost, each its own row): the paper's words, the measure, and a rule
(:mod:`market_sim.verdict_rules`) whose sentence the table prints beside its verdict.

Where the paper names a quality the simulation does not have as such ("know-how"), the row
states the measurable consequence it stands in for, in the KPI column.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from market_sim.verdict_rules import (
    CORE,
    DSO,
    HYBRID,
    NOT_MEASURABLE,
    TSO,
    Rule,
    Unmeasurable,
    all_of,
    conflict_rule,
    facilitation_rule,
    lowest_rule,
    no_conflict_rule,
    no_operational_data_rule,
    not_modelled,
    ratio_rule,
    violations_rule,
)

ADVANTAGE, DISADVANTAGE = "advantage", "disadvantage"

#: Thresholds of the rules: compute time and bytes differ by more than noise and bookkeeping;
#: volumes by more than the 1 % a single period's bids move; cost by more than 0.1 % (a
#: day's resource cost is mostly the energy schedule, common to all models).
BY_COMPUTE, BY_BYTES, BY_VIOLATIONS, TOL_VOLUME, BY_COST = 0.2, 0.2, 0.1, 0.01, 0.001


@dataclass(frozen=True)
class Claim:
    """One row of the measured Table I."""

    id: str
    model: str
    side: str  # advantage, or disadvantage (the paper's "disadvantages and challenges")
    text: str  # the paper's words
    kpi: str  # what measures it, with its unit
    rule: Rule

    def verdict(self, measures: pd.DataFrame) -> tuple[str, str]:
        """(verdict, reason) of this claim on ``measures`` (index model, columns measures)."""
        try:
            return self.rule.judge(measures)
        except Unmeasurable as why:
            return NOT_MEASURABLE, str(why)


#: Why market and dispatch know-how cannot be measured here: the simulated operators are equally
#: expert at clearing (distribution know-how does differ: the DSOs validate with AC power flows,
#: their tap changers and their own market; the TSO of tso_managed with linearised rows).
SAME_OPTIMISER = (
    "every operator of the simulation clears its markets with the same optimiser (HiGHS on the "
    "same market design), so market and dispatch know-how are equal by construction"
)


def _others(model: str) -> tuple[str, ...]:
    return tuple(m for m in CORE if m != model)


def _cost(model: str, versus: tuple[str, ...], more: bool) -> Rule:
    return ratio_rule(model, "resource_cost_eur", "resource cost", versus, BY_COST, more)


def _facilitation(prefix: str, model: str, side: str, text: str, mode: str) -> list[Claim]:
    """The three rows of a facilitation claim: validated, dispatched, resource cost."""
    if mode == "less":
        cost = _cost(model, _others(model), more=True)
    elif mode == "more":
        cost = _cost(model, (TSO,), more=False)
    else:  # most efficient: no other core model is cheaper by more than BY_COST
        cost = lowest_rule(model, "resource_cost_eur", "resource cost", BY_COST)
    return [
        Claim(f"{prefix}a", model, side, text, "DER validated up / down (MWh)",
              facilitation_rule(model, "validated", mode, TOL_VOLUME)),
        Claim(f"{prefix}b", model, side, text, "DER dispatched up / down (MWh)",
              facilitation_rule(model, "dispatched", mode, TOL_VOLUME)),
        Claim(f"{prefix}c", model, side, text, "resource cost (EUR)", cost),
    ]  # fmt: skip


def _know_how_on_networks(prefix: str, model: str) -> Claim:
    return Claim(
        prefix,
        model,
        ADVANTAGE,
        "DSO know-how on distribution networks",
        "violations after delivery / at the baseline (element-periods): the DSO keeps its "
        "network within limits",
        violations_rule(model, "violations_after_delivery", "violations after delivery", (TSO,),
                        BY_VIOLATIONS, more=False),
    )  # fmt: skip


def _restricted_compute(prefix: str, model: str) -> Claim:
    return Claim(
        prefix,
        model,
        ADVANTAGE,
        "Less computational and modelling requirements (restricted to each DSO)",
        "largest compute time of one operator, TSO or a DSO (s)",
        ratio_rule(model, "largest_operator_compute_s", "largest compute time of one operator",
                   (TSO,), BY_COMPUTE, more=False),
    )  # fmt: skip


def _dso_compute(model: str, versus: tuple[str, ...], by: tuple[float, ...]) -> Rule:
    rules = [
        ratio_rule(model, "dso_compute_s_per_dso", "compute time per DSO", (o,), b, more=True)
        for o, b in zip(versus, by, strict=True)
    ]
    return rules[0] if len(rules) == 1 else all_of(*rules)


def _conflict(prefix: str, model: str) -> Claim:
    return Claim(prefix, model, DISADVANTAGE, "Potential DSO conflict of interest",
                 "DER volume withheld vs a neutral iDSO (MWh), its TSO cost (EUR), "
                 "transformer aging avoided (h)", conflict_rule(model))  # fmt: skip


def _no_operational_data(prefix: str, model: str) -> Claim:
    return Claim(prefix, model, ADVANTAGE, "No need for operational data transfer from DSO to TSO",
                 "operational data bytes, DSO -> TSO (step 1b)",
                 no_operational_data_rule(model))  # fmt: skip


CLAIMS: tuple[Claim, ...] = (
    # -- TSO-managed ------------------------------------------------------------------------
    Claim("T1", TSO, ADVANTAGE, "Simplifies the TSO-DSO coordination process",
          "distinct message steps of a period (the paper's step labels)",
          ratio_rule(TSO, "message_steps", "number of distinct message steps", _others(TSO), 0.0,
                     more=False)),
    Claim("T2", TSO, ADVANTAGE, "TSO know-how on dispatch", "none",
          not_modelled(SAME_OPTIMISER)),
    Claim("T3", TSO, ADVANTAGE,
          "TSO has no conflict of interest when pushing distribution network assets to the limits",
          "DER volume withheld vs a neutral iDSO (MWh)", no_conflict_rule()),
    *_facilitation("T4", TSO, DISADVANTAGE,
                   "Likely to have a less efficient facilitation of DER services", "less"),
    Claim("T5a", TSO, DISADVANTAGE,
          "Huge computational and modelling challenges for the TSO (transmission and "
          "distribution)", "TSO compute time (s)",
          ratio_rule(TSO, "tso_compute_s", "TSO compute time", _others(TSO), BY_COMPUTE,
                     more=True)),
    Claim("T5b", TSO, DISADVANTAGE,
          "Huge computational and modelling challenges for the TSO (transmission and "
          "distribution)", "constraints of the TSO's problem (mean per period)",
          ratio_rule(TSO, "tso_constraints_mean", "TSO problem constraints", _others(TSO),
                     BY_COMPUTE, more=True)),
    Claim("T6a", TSO, DISADVANTAGE,
          "High amounts of operational data transfer between TSO and DSOs",
          "operational data bytes, DSO -> TSO (step 1b: the network state)",
          ratio_rule(TSO, "operational_data_bytes", "operational data bytes", _others(TSO),
                     BY_BYTES, more=True)),
    Claim("T6b", TSO, DISADVANTAGE,
          "High amounts of operational data transfer between TSO and DSOs",
          "all bytes exchanged between TSO and DSOs (both directions)",
          ratio_rule(TSO, "tso_dso_bytes", "TSO-DSO bytes", _others(TSO), BY_BYTES, more=True)),
    Claim("T7", TSO, DISADVANTAGE, "TSO lacks know-how on distribution networks",
          "DER-caused violations after delivery / at the baseline (element-periods)",
          violations_rule(TSO, "der_caused_violations", "DER-caused violations", _others(TSO),
                          0.0, more=True)),
    # -- TSO-DSO hybrid-managed -------------------------------------------------------------
    *_facilitation("H1", HYBRID, ADVANTAGE,
                   "Likely to have a more efficient facilitation of DER services (than the "
                   "TSO-managed model)", "more"),
    _know_how_on_networks("H2", HYBRID),
    _restricted_compute("H3", HYBRID),
    _no_operational_data("H4", HYBRID),
    _conflict("H5", HYBRID),
    Claim("H6", HYBRID, DISADVANTAGE, "Each DSO still has computational and modelling challenges",
          "compute time per DSO (s), against tso_managed's DSOs (which validate nothing)",
          _dso_compute(HYBRID, (TSO,), (BY_COMPUTE,))),
    Claim("H7", HYBRID, DISADVANTAGE, "More complex TSO-DSO coordination processes",
          "distinct message steps of a period (the paper's step labels)",
          ratio_rule(HYBRID, "message_steps", "number of distinct message steps", (TSO,), 0.0,
                     more=True)),
    # -- DSO-managed ------------------------------------------------------------------------
    *_facilitation("D1", DSO, ADVANTAGE,
                   "Likely to have the most efficient facilitation of DER services", "most"),
    _know_how_on_networks("D2", DSO),
    _restricted_compute("D3", DSO),
    _no_operational_data("D4", DSO),
    Claim("D5", DSO, ADVANTAGE, "Less data exchanges between TSO and DSO/DER",
          "bytes on the TSO's links (to and from DSOs and aggregators)",
          ratio_rule(DSO, "tso_link_bytes", "bytes on the TSO's links", _others(DSO), BY_BYTES,
                     more=False)),
    _conflict("D6", DSO),
    Claim("D7", DSO, DISADVANTAGE,
          "Each DSO still has computational and modelling challenges with further complexity "
          "with distribution-level markets",
          "compute time per DSO (s), against tso_managed's and hybrid's",
          _dso_compute(DSO, (TSO, HYBRID), (BY_COMPUTE, 0.1))),
    Claim("D8", DSO, DISADVANTAGE, "DSO lacks know-how on markets", "none",
          not_modelled(SAME_OPTIMISER)),
)  # fmt: skip


def verdicts(measures: pd.DataFrame) -> pd.DataFrame:
    """The measured Table I: one row per claim with its rule, figures per model and verdict."""
    rows = []
    for claim in CLAIMS:
        verdict, reason = claim.verdict(measures)
        rows.append(
            {
                "id": claim.id,
                "model": claim.model,
                "side": claim.side,
                "claim": claim.text,
                "kpi": claim.kpi,
                "rule": claim.rule.text,
                **{m: figure(measures, m, claim.rule.columns) for m in measures.index},
                "verdict": verdict,
                "reason": reason,
            }
        )
    return pd.DataFrame(rows)


def figure(measures: pd.DataFrame, model: str, columns: tuple[str, ...]) -> str:
    """A claim's figures of one model, " / "-separated in the order of its columns; "n/a"
    where the run does not have the KPI."""
    shown = []
    for column in columns:
        present = column in measures.columns and pd.notna(measures.at[model, column])
        shown.append(number(float(measures.at[model, column])) if present else "n/a")
    return " / ".join(shown)


def number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}"
