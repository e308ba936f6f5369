"""The verdict rules of the measured Table I on hand-made measures tables.

Three worlds made by hand: one where the paper is right about every claim (each claim
supported), one where the models do not differ or differ the other way (each contradicted),
and runs without the measures (each not measurable). Then the preconditions that make a
claim not measurable on a scenario whatever its figures.
"""

from __future__ import annotations

import pandas as pd
import pytest

from market_sim.table_one import CLAIMS, verdicts
from market_sim.verdict_rules import (
    CONTRADICTED,
    NOT_MEASURABLE,
    SUPPORTED,
    VERDICTS,
    ratio_rule,
)

MODELS = ("tso_managed", "hybrid", "dso_managed")
#: Claims about a quality every simulated operator has equally: never measurable.
BY_CONSTRUCTION = {"T2", "D8"}


def world(**columns: tuple[float, float, float]) -> pd.DataFrame:
    """A measures table: column -> (tso_managed, hybrid, dso_managed)."""
    return pd.DataFrame(columns, index=pd.Index(MODELS, name="model"))


def as_the_paper_says() -> pd.DataFrame:
    """TSO-managed: simplest, heaviest for the TSO, most data, validates and dispatches least,
    costs most, causes violations; the DSOs validate more, keep their networks within limits,
    each computes, DSO-managed best and leanest on the TSO's links; DSOs withhold services
    that cost the TSO and save them aging."""
    return world(
        message_steps=(4, 5, 6),
        der_offered_up_mwh=(100, 100, 100),
        der_offered_down_mwh=(100, 100, 100),
        der_validated_up_mwh=(80, 95, 96),
        der_validated_down_mwh=(90, 90, 90.5),
        der_dispatched_up_mwh=(20, 25, 25),
        der_dispatched_down_mwh=(5, 5, 5),
        resource_cost_eur=(1100, 1000, 990),
        tso_compute_s=(10, 2, 2),
        tso_constraints_mean=(200, 130, 130),
        operational_data_bytes=(5e6, 0, 0),
        tso_dso_bytes=(9e6, 4e6, 2e6),
        tso_link_bytes=(12e6, 9e6, 3e6),
        der_caused_violations=(5, 0, 0),
        baseline_violations=(70, 70, 70),
        violations_after_delivery=(75, 20, 20),
        nonconverged_power_flows=(0, 0, 0),
        largest_operator_compute_s=(10, 6, 7),
        dso_compute_s_per_dso=(0.1, 5, 6),
        withheld_mwh=(0, 12, 15),
        withheld_tso_cost_eur=(0, 300, 350),
        aging_avoided_h=(0, 0.4, 0.5),
        trafo_loss_of_life_h=(3, 2.6, 2.5),
    )


def the_models_do_not_differ() -> pd.DataFrame:
    """Equal figures everywhere, except where equal would still satisfy a claim ("no model
    validates more than dso_managed", "no model is cheaper"): there dso_managed does worse;
    the TSO withholds services and withheld ones cost nothing."""
    m = as_the_paper_says()
    for column in m.columns:
        m[column] = m.at["tso_managed", column]
    m[["der_validated_up_mwh", "der_dispatched_up_mwh"]] = [[90, 20], [90, 20], [80, 15]]
    m["resource_cost_eur"] = (1000, 1000, 1100)
    m["operational_data_bytes"] = 5e6  # every model ships it
    m["withheld_mwh"] = 10.0
    m["withheld_tso_cost_eur"] = 0.0
    m["aging_avoided_h"] = 0.3
    return m


def _verdict_of(table: pd.DataFrame) -> dict[str, str]:
    return dict(zip(table.id, table.verdict, strict=True))


def test_every_claim_holds_where_the_paper_is_right():
    got = _verdict_of(verdicts(as_the_paper_says()))
    assert got == {c.id: NOT_MEASURABLE if c.id in BY_CONSTRUCTION else SUPPORTED for c in CLAIMS}


def test_every_claim_fails_where_the_models_do_not_differ():
    got = _verdict_of(verdicts(the_models_do_not_differ()))
    want = {c.id: NOT_MEASURABLE if c.id in BY_CONSTRUCTION else CONTRADICTED for c in CLAIMS}
    assert got == want


def test_every_claim_is_not_measurable_without_its_kpis():
    """Runs without the measures (a KPI another release adds) give no made-up figure."""
    table = verdicts(world(message_steps=(4, 5, 5)).drop(columns="message_steps"))
    assert set(table.verdict) == {NOT_MEASURABLE}
    assert table.reason.str.contains("absent|not modelled|construction|same optimiser").all()
    assert (table[list(MODELS)].map(lambda s: set(s.split(" / ")) <= {"n/a", ""})).all().all()


def test_a_missing_model_is_not_measurable():
    table = verdicts(as_the_paper_says().drop(index="hybrid"))
    row = table.set_index("id").loc["H1a"]
    assert row.verdict == NOT_MEASURABLE and row.reason == "hybrid was not run"


def test_withholding_nowhere_is_not_measurable_on_this_scenario():
    """No DSO validates with conflict-of-interest limits: the conflict claims are not measurable
    (not contradicted: the scenario did not ask the question)."""
    m = as_the_paper_says()
    m["withheld_mwh"] = 0.0
    got = verdicts(m).set_index("id")
    for claim in ("T3", "H5", "D6"):
        assert got.at[claim, "verdict"] == NOT_MEASURABLE
        assert "no DSO withheld" in got.at[claim, "reason"]


def test_the_conflict_is_judged_without_an_aging_kpi():
    """The withheld volume's cost to the TSO decides where no run measures aging avoided."""
    m = as_the_paper_says().drop(columns="aging_avoided_h")
    got = verdicts(m).set_index("id")
    assert got.at["H5", "verdict"] == SUPPORTED and "aging not measured" in got.at["H5", "reason"]
    m["withheld_tso_cost_eur"] = 0.0
    assert verdicts(m).set_index("id").at["H5", "verdict"] == CONTRADICTED


def test_a_kpi_unknown_in_a_period_is_not_judged():
    m = as_the_paper_says()
    m.loc["dso_managed", "resource_cost_eur"] = float("nan")
    got = verdicts(m).set_index("id")
    assert got.at["D1c", "verdict"] == NOT_MEASURABLE and "NaN" in got.at["D1c", "reason"]


def test_violations_are_unknown_where_a_power_flow_did_not_converge():
    m = as_the_paper_says()
    m.loc["hybrid", "nonconverged_power_flows"] = 1
    got = verdicts(m).set_index("id")
    assert got.at["H2", "verdict"] == NOT_MEASURABLE
    assert got.at["D2", "verdict"] == SUPPORTED  # tso_managed and dso_managed all converged
    assert got.at["T7", "verdict"] == NOT_MEASURABLE


def test_no_operational_data_anywhere_is_not_measurable():
    m = as_the_paper_says()
    m["operational_data_bytes"] = 0.0
    got = verdicts(m).set_index("id")
    assert got.at["H4", "verdict"] == NOT_MEASURABLE and got.at["D4", "verdict"] == NOT_MEASURABLE


def test_no_der_offered_is_not_measurable():
    m = as_the_paper_says()
    m.loc["tso_managed", ["der_offered_up_mwh", "der_offered_down_mwh"]] = 0.0
    got = verdicts(m).set_index("id")
    assert got.at["H1a", "verdict"] == NOT_MEASURABLE
    assert "no DER offered" in got.at["H1a", "reason"]


@pytest.mark.parametrize(
    ("tso_seconds", "verdict"),
    [(12.1, SUPPORTED), (11.9, CONTRADICTED), (float("nan"), NOT_MEASURABLE)],
)
def test_the_twenty_percent_rule_at_its_edge(tso_seconds, verdict):
    """The rule the table states is the rule applied: 20 % over the largest other figure."""
    rule = ratio_rule("tso_managed", "tso_compute_s", "TSO compute time",
                      ("hybrid", "dso_managed"), 0.2, more=True)  # fmt: skip
    assert "exceeds each other core model's by more than 20%" in rule.text
    m = world(tso_compute_s=(tso_seconds, 10.0, 8.0))
    claim = next(c for c in CLAIMS if c.id == "T5a")
    assert claim.rule.text == rule.text
    assert claim.verdict(m)[0] == verdict


def test_up_and_down_are_never_added():
    """Validating 20 MWh more up and 5 % less down is not "more" (it would be, added)."""
    m = as_the_paper_says()
    m.loc["hybrid", ["der_validated_up_mwh", "der_validated_down_mwh"]] = (100, 90 * 0.95)
    assert verdicts(m).set_index("id").at["H1a", "verdict"] == CONTRADICTED


def test_ids_are_unique_and_every_verdict_allowed():
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids))
    assert set(verdicts(as_the_paper_says()).verdict) <= set(VERDICTS)
