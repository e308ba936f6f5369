"""The paper's variants (issue 9): hybrid with pre-validation (Section II-B) and DSO-managed
with the DSO as aggregator (Section II-C). Each one's message log follows the paper step by
step; the TSO sees only validated volumes; a DSO that is the aggregator gets no aggregator bids
and its aggregators are paid nothing; both run a whole day within the market's invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from market_sim import registry
from market_sim.cli import _parser
from market_sim.config import parse_config
from market_sim.messages import Kind
from market_sim.results import load_results
from market_sim.runner import run_scenario
from market_sim.scenario import Scenario
from tests.test_coordination_stubs import _links, _run

NOON = 48  # the rural feeder overvolts at noon on its forecast: its DSO buys relief
PRE = "hybrid+pre_validation"
DSO_AGG = "dso_managed+dso_is_aggregator"

#: Each variant's steps as the paper describes them, in order: (step, sender role, receiver
#: role, message kind). Written out here, not read from the models' declarations.
PAPER = {
    # "DER send all bids first to the DSO who validates them so DER can directly send
    # validated bids to the TSO" (II-B); then the TSO dispatches (step 4 of Fig. 2)
    PRE: [
        ("1", "aggregator", "dso", "bids"),
        ("3a", "dso", "dso", "validation"),
        ("3b", "dso", "aggregator", "validated_bids"),
        ("3b", "dso", "tso", "dso_request"),  # the DSO's own need (quickstart: dso_market on)
        ("3c", "aggregator", "tso", "validated_bids"),
        ("4", "tso", "aggregator", "dispatch"),
    ],
    # "a modified step 2, in which the DSO does not validate DER service bids but
    # create/decide DER service bids and aggregate them (2a)" (II-C), then Fig. 3's 2b-4
    DSO_AGG: [
        ("2a", "dso", "dso", "validation"),
        ("2b", "dso", "tso", "aggregated_offer"),
        ("3", "tso", "dso", "aggregated_dispatch"),
        ("4", "dso", "dso", "dispatch"),
    ],
}


def test_pre_validation_on_stubs_routes_validated_bids_through_der():
    """Stub agents (each DSO validates half of every bid, the TSO accepts all it gets): the
    DER carry their validated halves to the TSO, and the market outcome is the hybrid one."""
    outcome, log, parties, _, events = _run(PRE)
    assert _links(log) == [
        ("1", "pool", "north", "bids"),
        ("1", "pool", "south", "bids"),
        ("1", "coop", "north", "bids"),
        ("3a", "north", "north", "validation"),
        ("3a", "south", "south", "validation"),
        ("3b", "north", "pool", "validated_bids"),
        ("3b", "north", "coop", "validated_bids"),
        ("3b", "south", "pool", "validated_bids"),
        ("3c", "pool", "tso", "validated_bids"),
        ("3c", "coop", "tso", "validated_bids"),
        ("4", "tso", "pool", "dispatch"),
        ("4", "tso", "coop", "dispatch"),
    ]
    assert [set(v.bid_id) for v in parties.dsos["north"].validated] == [{0, 1, 2}]
    (offers,) = parties.tso.cleared
    assert dict(zip(offers.offer_id, offers.mw, strict=True)) == {0: 1, 1: 0.5, 2: 2, 4: 3, 5: 4}
    hybrid = _run("hybrid")[0]
    assert outcome.dispatch.equals(hybrid.dispatch)
    assert outcome.validation.equals(hybrid.validation) and not events


def test_dso_as_aggregator_on_stubs_has_no_bid_step():
    outcome, log, parties, _, events = _run(DSO_AGG)
    assert sorted(_links(log)) == [
        ("2a", "north", "north", "validation"),
        ("2a", "south", "south", "validation"),
        ("2b", "north", "tso", "aggregated_offer"),
        ("2b", "south", "tso", "aggregated_offer"),
        ("3", "tso", "north", "aggregated_dispatch"),
        ("3", "tso", "south", "aggregated_dispatch"),
        ("4", "north", "north", "dispatch"),
        ("4", "south", "south", "dispatch"),
    ]
    # each DSO decided on exactly its own DER's bids, as dso_managed's DSOs received them
    assert [set(v.bid_id) for v in parties.dsos["north"].validated] == [{0, 1, 2}]
    assert [set(v.bid_id) for v in parties.dsos["south"].validated] == [{4, 5}]
    base = _run("dso_managed")[0]
    assert outcome.dispatch.set_index("bid_id").mw.to_dict() == {0: 1.0, 2: 2.0, 5: 4.0}
    assert (
        outcome.dispatch.sort_values("bid_id")
        .reset_index(drop=True)
        .equals(base.dispatch.sort_values("bid_id").reset_index(drop=True))
    )
    assert outcome.interface_shortfall_mw == base.interface_shortfall_mw


def _noon(make_model, model, **changes):
    """One noon period of the quickstart; returns the model and every message it sent."""
    sim = make_model(model, **changes)
    sent = []
    send = sim.post.send

    def capture(messages, gate_s=None):
        messages = list(messages)
        sent.extend(messages)
        return send(messages, gate_s)

    sim.post.send = capture
    sim.period = NOON
    sim.step()
    return sim, sent


@pytest.mark.parametrize("model", list(PAPER))
def test_message_sequence_follows_the_paper(make_model, model):
    sim, _ = _noon(make_model, model)
    log = sim.message_table()
    seen = list(
        dict.fromkeys(zip(log.step, log.sender_role, log.receiver_role, log.kind, strict=True))
    )
    assert seen == PAPER[model]
    # steps in order: each step's messages sent after the previous step's arrived
    labels = list(dict.fromkeys(log.step))
    first_sent = log.groupby("step", sort=False).time_s.min()
    last_arrival = log.groupby("step", sort=False).arrival_s.max()
    for before, after in zip(labels, labels[1:], strict=False):
        assert first_sent[after] >= last_arrival[before] - 1e-9, (before, after)
    assert not log.late.any()
    # and the model declares exactly these steps (and the ones sent only when configured: a
    # P-Q area, an iDSO's network status)
    declared = [(s.label, s.sender, s.receiver, s.kind.value) for s in type(sim.coordination).steps]
    conditional = ("flexibility_area", "network_status")
    assert [d for d in declared if d[3] not in conditional] == PAPER[model]


def test_pre_validation_without_a_dso_market_sends_no_request(make_model, quickstart):
    off = quickstart.dso_market.model_copy(update={"enabled": False})
    sim, _ = _noon(make_model, PRE, dso_market=off)
    kinds = set(sim.message_table().kind)
    assert "dso_request" not in kinds and "validated_bids" in kinds


def test_pre_validation_tso_receives_only_validated_volumes(make_model):
    """What reaches the TSO (step 3c) is each bid at its DSO's validated MW, nothing above,
    nothing the DSO cut to zero, and all of what it validated; no bid reaches it unvalidated."""
    sim, sent = _noon(make_model, PRE)
    to_tso = [m for m in sent if m.receiver == "tso"]
    assert {m.kind for m in to_tso} == {Kind.VALIDATED_BIDS, Kind.DSO_REQUEST}
    offered = pd.concat(
        [m.payload for m in to_tso if m.kind == Kind.VALIDATED_BIDS], ignore_index=True
    )
    assert offered.bid_id.is_unique
    validation = sim.recorder.table("validation").set_index("bid_id")
    bids = sim.recorder.table("bids").set_index("bid_id")
    validated = validation.validated_mw.reindex(offered.bid_id).to_numpy()
    assert (offered.mw.to_numpy() <= validated + 1e-12).all()
    assert (offered.mw > 0).all()
    # validation cut some bids in this period, and those reached the TSO cut
    cut = validation.validated_mw < bids.mw.reindex(validation.index) - 1e-6
    assert cut.any()
    expected = validation.validated_mw[validation.validated_mw > 1e-9]
    assert offered.mw.sum() == pytest.approx(expected.sum(), abs=1e-9)
    # and the TSO dispatched none of it beyond what was validated
    der = sim.recorder.table("dispatch").query("resource == 'der'")
    assert len(der) > 0
    assert (der.mw.to_numpy() <= validation.validated_mw.reindex(der.id).to_numpy() + 1e-9).all()


def test_dso_as_aggregator_gets_no_aggregator_bids(make_model):
    sim, sent = _noon(make_model, DSO_AGG)
    log = sim.message_table()
    assert not (log.kind == "bids").any()
    assert not ((log.sender_role == "aggregator") | (log.receiver_role == "aggregator")).any()
    assert {m.sender for m in sent} == {"tso", *sim.dsos}
    # every bid the DSOs validated is one of their own DER's, in their own network
    bids = sim.recorder.table("bids")
    assert (bids.aggregator == bids.dso).all() and len(bids) > 0
    validation = sim.recorder.table("validation").merge(bids[["bid_id", "dso"]], on="bid_id")
    assert (validation.validator == validation.dso).all()
    assert set(validation.bid_id) == set(bids.bid_id)


def test_dso_as_aggregator_same_market_other_intermediary(make_model):
    """The same DER, validated and dispatched as in dso_managed; the fee the config's
    aggregators earned there goes to the DSO that did their work here, and nothing to them."""
    base, _ = _noon(make_model, "dso_managed")
    variant, _ = _noon(make_model, DSO_AGG)
    # (who fails to deliver is drawn per row of the dispatch as collected, not compared)
    columns = ["id", "buyer", "direction", "mw", "payment_eur"]
    b = base.recorder.table("dispatch").sort_values(["id", "buyer"])[columns]
    v = variant.recorder.table("dispatch").sort_values(["id", "buyer"])[columns]
    pd.testing.assert_frame_equal(b.reset_index(drop=True), v.reset_index(drop=True))
    b, v = (m.recorder.table("validation").sort_values("bid_id") for m in (base, variant))
    pd.testing.assert_frame_equal(b.reset_index(drop=True), v.reset_index(drop=True))

    settled = variant.recorder.table("settlement")
    assert abs(settled.amount_eur.sum()) < 1e-9
    assert set(settled.role) <= {"tso", "dso", "prosumer", "ter"}
    assert not settled.party.isin(list(variant.aggregators)).any()
    fee = settled[settled["item"] == "aggregator_fee"]
    earned = fee[fee.role == "dso"].amount_eur.sum()
    der = variant.recorder.table("dispatch").query("resource == 'der'")
    rate = variant.config.settlement.aggregator_fee_eur_per_mwh
    assert earned > 0
    assert earned == pytest.approx(rate * der.mw.sum() * variant.period_h)
    for name in variant.dsos:  # each DSO earns the fee on its own DER
        mine = fee[fee.party == name].amount_eur.sum()
        assert mine == pytest.approx(rate * der[der.dso == name].mw.sum() * variant.period_h)
    before = base.recorder.table("settlement")
    assert earned == pytest.approx(
        before.query("item == 'aggregator_fee' and role == 'aggregator'").amount_eur.sum()
    )


def test_variants_are_registered_by_base_and_option():
    models = registry.COORDINATION_MODELS
    assert models.base_of(PRE) == "hybrid" and models.base_of(DSO_AGG) == "dso_managed"
    assert models.base_of("hybrid") == "hybrid"
    assert models.with_options(["pre_validation", "dso_is_aggregator"]) == (PRE, DSO_AGG)
    assert models.with_options(["dso_is_aggregator"]) == (DSO_AGG,)
    with pytest.raises(ValueError, match="'typo' is no option of a coordination model"):
        models.with_options(["typo"])
    for name, (base, _) in registry.VARIANTS.items():
        assert issubclass(models.load(name), models.load(base)), name
    with pytest.raises(ValueError, match="expected a member"):
        registry.Family("x", {"a": "m:a"}, {"a+b": ("a", "b")})


def test_config_and_cli_take_variant_names(quickstart):
    data = quickstart.model_dump()
    listed = yaml.safe_load(f"models: [hybrid, {PRE}]")["models"]
    config = parse_config({**data, "models": listed})
    assert config.models == ["hybrid", PRE]
    assert config.for_model(DSO_AGG).models == [DSO_AGG]
    args = _parser().parse_args(["run", "configs/quickstart.yaml", "--model", PRE])
    assert args.model == [PRE]


@pytest.mark.slow
def test_a_day_of_each_variant_keeps_the_invariants(quickstart, networks, transmission, tmp_path):
    """A whole quickstart day of each variant, checked every period, written to a run folder
    named as registered (with its '+')."""
    scenario = Scenario(quickstart, networks, transmission)
    reports = run_scenario(scenario, tmp_path, [PRE, DSO_AGG], progress=False, check=True)
    for report in reports:
        assert report.folder == tmp_path / "quickstart" / report.model
        assert report.invariant_violations == 0, report.model
        tables = load_results(report.folder)
        assert tables["kpis"].period.nunique() == quickstart.periods_per_day
        der = tables["dispatch"].query("resource == 'der'")
        assert der.mw.sum() > 0, report.model  # DER served the TSO during the day
    messages = load_results(tmp_path / "quickstart" / DSO_AGG)["messages"]
    assert not (messages.kind == "bids").any()


@pytest.mark.parametrize("model, first_external", [(PRE, "1"), (DSO_AGG, "2b")])
def test_late_messages_are_rejected_and_the_run_goes_on(
    make_model, quickstart, model, first_external
):
    """A link slower than a gate: the variant's first message between two agents arrives
    late, nothing is dispatched, and the period is delivered and recorded all the same."""
    slow = quickstart.communication.model_copy(update={"latency_s": 400.0})
    sim = make_model(model, communication=slow)
    sim.period = NOON
    sim.run(periods=2)
    t = sim.tables()
    first = t["messages"][t["messages"].step == first_external]
    assert first.late.all() and len(first) > 0
    assert (t["events"].kind == "late_message").sum() >= len(first)
    assert t["dispatch"].query("resource == 'der'").empty
    assert t["grid"].converged.all() and len(t["grid"]) == 2 * len(sim.dsos)


@pytest.mark.parametrize("model", list(PAPER))
def test_same_seed_same_tables(make_model, model):
    def run():
        sim = make_model(model)
        sim.period = NOON
        sim.run(periods=2)
        return sim.tables()

    first, second = run(), run()
    for name in first:
        if name != "timings":
            pd.testing.assert_frame_equal(first[name], second[name], check_exact=True, obj=name)


def _kpis(make_model, model, **changes) -> pd.Series:
    sim = make_model(model, **changes)
    sim.period = NOON
    sim.run(periods=3)
    return sim.tables()["kpis"].set_index(["period", "name"]).value


def _differing(base: pd.Series, variant: pd.Series) -> set[str]:
    """KPIs that differ beyond round-off (the same sums in another order: 1e-15 here)."""
    assert base.index.equals(variant.index)
    differ = (base - variant).abs() > 1e-9 * (1 + base.abs())
    return set(base[differ].index.get_level_values("name"))


def test_pre_validation_is_the_hybrid_market_with_other_messages(make_model):
    """Three periods: the same validation, clearing, dispatch, delivery and payments as the
    hybrid model; only the messages differ (the DER carry the validated bids)."""
    base, variant = _kpis(make_model, "hybrid"), _kpis(make_model, PRE)
    assert _differing(base, variant) == {"messages", "message_bytes"}


def test_dso_as_aggregator_differs_from_dso_managed_only_in_messages_and_payees(
    make_model, quickstart
):
    """With every DER delivering (no failure draw, which is taken per row of the dispatch as
    collected, so by aggregator in dso_managed and by DSO here), several periods of the variant
    are dso_managed's market exactly: the same KPIs but the messages and who is paid."""
    reliable = quickstart.settlement.model_copy(update={"delivery_reliability": 1.0})
    base = _kpis(make_model, "dso_managed", settlement=reliable)
    variant = _kpis(make_model, DSO_AGG, settlement=reliable)
    payees = {"payments_aggregator_eur", "payments_dso_eur"}
    surplus = {"surplus_aggregator_eur", "surplus_dso_eur"}
    names = _differing(base, variant)
    assert names == {"messages", "message_bytes"} | payees | surplus, names
    paid = base.xs("payments_aggregator_eur", level="name")
    assert (variant.xs("payments_aggregator_eur", level="name") == 0).all() and (paid > 0).all()
    moved = variant.xs("payments_dso_eur", level="name") - base.xs("payments_dso_eur", level="name")
    np.testing.assert_allclose(moved, paid, rtol=1e-9)
    assert (variant.xs("messages", level="name") < base.xs("messages", level="name")).all()


def test_dso_as_aggregator_meets_a_tso_target(make_model, quickstart):
    """Scheme ii: step 3 becomes the TSO's target at the interface; the DSO still dispatches
    its own DER, and the period keeps the invariants."""
    target = quickstart.dso_market.model_copy(update={"scheme": "tso_target"})
    sim, _ = _noon(make_model, DSO_AGG, dso_market=target)
    log = sim.message_table()
    assert set(log[log.step == "3"].kind) == {"interface_target"}
    dispatch = log[log.step == "4"]
    assert set(zip(dispatch.sender, dispatch.receiver, strict=True)) == {(n, n) for n in sim.dsos}
    assert not (sim.tables()["events"].kind == "invariant_violated").any()
