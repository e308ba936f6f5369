"""KPIs computed by hand on a small case: resource cost (efficiency) against payments."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_sim.cli import main
from market_sim.invariants import PeriodTables, check_period
from market_sim.kpis import NetworkCheck, _sums_by, period_kpis
from market_sim.markets.settlement import DISPATCH_DTYPES, dispatch_columns, settlement_table
from market_sim.tables import KPIS
from market_sim.types import PowerFlowResult, typed_frame
from tests.conftest import QUICKSTART

HOURS = 0.25
VOLL = 3000.0
PRICES = pd.Series([50.0], index=[5])


class Terms:
    pricing = "pay_as_clear"
    aggregator_fee_eur_per_mwh = 1.0
    imbalance_price_factor = 1.5


BIDS = pd.DataFrame(
    {
        "bid_id": [7, 8],
        "prosumer": [3, 3],
        "aggregator": ["agg", "agg"],
        "dso": ["d1", "d1"],
        "element": ["storage", "storage"],
        "element_index": [0, 0],
        "bus": [11, 11],
        "direction": ["up", "down"],
        "mw": [2.0, 1.5],
        "price_eur_per_mwh": [30.0, 20.0],
    }
)


def _dispatch(delivered_mw: float) -> pd.DataFrame:
    """One TER up offer (10 MW at 40 EUR/MWh) and one DER up bid (2 MW asking 30 EUR/MWh) at
    bus 5, both accepted; the balancing price there is 50 EUR/MWh. The DER delivers
    ``delivered_mw`` of its 2 MW. Its down bid (1.5 MW) is not accepted."""
    accepted = pd.DataFrame({"offer_id": [-1, 7], "mw": [10.0, 2.0]})
    offers = pd.DataFrame(
        {
            "offer_id": [-1],
            "element": ["gen 0"],
            "bus": [5],
            "direction": ["up"],
            "mw": [10.0],
            "price_eur_per_mwh": [40.0],
        }
    )
    delivery = pd.DataFrame(
        {"bid_id": [7], "buyer": ["tso"], "mw": [2.0], "delivered_mw": [delivered_mw]}
    )
    columns = dispatch_columns(accepted, offers, delivery, BIDS, {"d1": 5}, PRICES, HOURS, Terms)
    return typed_frame(columns, DISPATCH_DTYPES)


def _flow(converged=True, n_voltage=0, interface_p_mw=0.0) -> PowerFlowResult:
    return PowerFlowResult(converged, 1.0, 1.0, 50.0, 50.0, n_voltage, 0, 0, interface_p_mw, 0.0)


def _kpis(delivered_mw: float, grid=None, messages=None) -> dict[str, float]:
    dispatch = _dispatch(delivered_mw)
    flows = {
        "d1": NetworkCheck(
            _flow(interface_p_mw=1.0 + 0.95 * delivered_mw),
            frozenset(),
            _flow(interface_p_mw=1.0),
            frozenset(),
        )
    }
    rows = period_kpis(
        hours=HOURS, need_mw=12.0, schedule_cost_eur_per_h=1000.0, bids=BIDS,
        validation=pd.DataFrame({"bid_id": [7, 8], "validated_mw": [2.0, 1.0]}),
        dispatch=dispatch, settlement=settlement_table(dispatch, HOURS, Terms),
        bus_price=PRICES, unserved_mw=0.0, voll_eur_per_mwh=VOLL, grid=grid or flows,
        messages=messages if messages is not None else pd.DataFrame(
            {"sender": [], "receiver": [], "bytes": [], "late": []}
        ),
    )  # fmt: skip
    assert [n for n, _, _ in rows] == list(KPIS)
    assert all(u == KPIS[n][0] for n, _, u in rows)
    return {n: v for n, v, _ in rows}


def test_a_der_that_fails_to_deliver_lowers_a_transfer_never_the_resource_cost():
    """Issue 8, item 2. The old ``system_cost_eur`` was the TSO's net payments plus schedule and
    unserved energy: a DER that failed to deliver paid an imbalance charge, which lowered it
    (250 + 150 became 250 + 150 - 37.5). That is a transfer; the resource cost rises instead:
    the DER's unincurred activation (2 MW x 30) is replaced by covering 2 MW at the price 50."""
    ok, failed = _kpis(2.0), _kpis(0.0)
    old_system_cost = {k: 250.0 - v["payments_tso_eur"] for k, v in (("ok", ok), ("fail", failed))}
    assert old_system_cost == pytest.approx({"ok": 400.0, "fail": 362.5})
    # 250 schedule + (10 x 40 + 2 x 30) x 0.25 activation
    assert ok["resource_cost_eur"] == pytest.approx(250.0 + 115.0)
    # 250 + 10 x 40 x 0.25 activation + 2 x 50 x 0.25 covering the undelivered energy
    assert failed["activation_cost_eur"] == pytest.approx(100.0)
    assert failed["undelivered_cover_cost_eur"] == pytest.approx(25.0)
    assert failed["resource_cost_eur"] == pytest.approx(375.0)
    assert failed["resource_cost_eur"] > ok["resource_cost_eur"]


def test_payments_per_party_are_transfers_that_sum_to_zero_and_give_surplus():
    failed = _kpis(0.0)
    # TSO: pays 10 x 50 x 0.25 to the TER and 2 x 50 x 0.25 for the DER, gets the imbalance
    # charge 2 x 50 x 1.5 x 0.25 back; the aggregator keeps its fee 2 x 1 x 0.25
    expected = {"tso": -125.0 - 25.0 + 37.5, "ter": 125.0, "aggregator": 0.5, "prosumer": -13.0}
    for role, amount in expected.items():
        assert failed[f"payments_{role}_eur"] == pytest.approx(amount), role
    assert failed["payments_dso_eur"] == 0.0
    assert sum(failed[f"payments_{r}_eur"] for r in (*expected, "dso")) == pytest.approx(0.0)
    # surplus: what they received less their delivered energy at their asks
    assert failed["surplus_ter_eur"] == pytest.approx(125.0 - 100.0)
    assert failed["surplus_prosumer_eur"] == pytest.approx(-13.0)
    assert _kpis(2.0)["surplus_prosumer_eur"] == pytest.approx(25.0 - 0.5 - 15.0)
    assert failed["imbalance_charges_eur"] == pytest.approx(37.5)


def test_volumes_are_counted_per_direction():
    k = _kpis(0.0)
    assert k["der_offered_up_mwh"] == pytest.approx(0.5)
    assert k["der_offered_down_mwh"] == pytest.approx(0.375)
    assert k["der_validated_down_mwh"] == pytest.approx(0.25)
    assert k["der_dispatched_up_mwh"] == pytest.approx(0.5)
    assert k["der_dispatched_down_mwh"] == 0.0
    assert k["der_delivered_up_mwh"] == 0.0
    assert k["ter_activated_up_mwh"] == pytest.approx(2.5)


def test_violations_split_into_baseline_and_der_caused_and_non_converged_never_zero():
    five = frozenset(f"bus {i}" for i in range(5))
    grid = {
        "d1": NetworkCheck(_flow(n_voltage=2), frozenset({"bus 3", "bus 4"}), _flow(n_voltage=1),
                           frozenset({"bus 3"})),
        "d2": NetworkCheck(_flow(converged=False), None, _flow(n_voltage=5), five),
    }  # fmt: skip
    k = _kpis(2.0, grid=grid)
    assert k["voltage_violations"] == 2.0  # d2's delivery is unknown, not 0 and not 5
    assert k["baseline_violations"] == 1.0 and k["der_caused_violations"] == 1.0
    assert k["nonconverged_power_flows"] == 1.0
    assert k["baseline_nonconverged_power_flows"] == 0.0


def test_interface_deviation_measures_what_the_interface_really_did():
    # the interface moved 0.95 x delivered (losses), against 2 MW dispatched up
    assert _kpis(2.0)["interface_deviation_mw"] == pytest.approx(0.1)
    assert _kpis(0.0)["interface_deviation_mw"] == pytest.approx(2.0)


def test_late_messages_count_rejected_messages_between_agents():
    messages = pd.DataFrame(
        {
            "sender": ["agg", "agg", "tso"],
            "receiver": ["tso", "tso", "tso"],
            "bytes": [100, 50, 10],
            "late": [True, False, True],
        }
    )
    k = _kpis(2.0, messages=messages)
    assert (k["messages"], k["message_bytes"], k["late_messages"]) == (2.0, 150.0, 1.0)


# -- invariants ------------------------------------------------------------------------------


def _period(**changes) -> PeriodTables:
    """The small case's period, every invariant holding; ``changes`` break one."""
    dispatch = _dispatch(2.0)
    devices = pd.DataFrame(
        {
            "dso": ["d1"],
            "element": ["storage"],
            "element_index": [0],
            "energy_mwh": [0.5],
            "min_mwh": [0.0],
            "max_mwh": [1.0],
        }
    )
    tables = {
        "hours": HOURS,
        "bids": BIDS,
        "validation": pd.DataFrame({"bid_id": [7, 8], "validated_mw": [2.0, 1.0]}),
        "dispatch": dispatch,
        "settlement": settlement_table(dispatch, HOURS, Terms),
        "devices": devices,
        "need_mw": 12.0,
        "unserved_up_mw": 0.0,
        "unserved_down_mw": 0.0,
    }
    return PeriodTables(**(tables | changes))


def test_the_small_case_holds_every_invariant():
    assert check_period(_period()) == []


def _with(table: pd.DataFrame, row: int, **values) -> pd.DataFrame:
    table = table.copy()
    for column, value in values.items():
        table.loc[row, column] = value
    return table


@pytest.mark.parametrize(
    ("label", "changes", "expected"),
    [
        ("over validated", lambda t: {"validation": _with(t.validation, 0, validated_mw=1.5)},
         "dispatched > validated: bid 7"),
        ("over offered", lambda t: {"validation": _with(t.validation, 1, validated_mw=2.0)},
         "validated > offered: bid 8"),
        ("unbalanced", lambda t: {"need_mw": 13.0}, "energy balance"),
        ("money lost", lambda t: {"settlement": _with(t.settlement, 0, amount_eur=99.0)},
         "settlement not zero-sum"),
        ("paid below ask", lambda t: {"dispatch": _with(t.dispatch, 1, payment_eur=1.0)},
         "individual rationality: der 7"),
        ("wash trade", lambda t: {"dispatch": pd.concat([t.dispatch, _with(
            t.dispatch, 0, direction="down", bid_price_eur_per_mwh=-60.0, payment_eur=-125.0
        ).iloc[[0]]], ignore_index=True), "need_mw": 2.0}, "wash trade: gen 0"),
        ("empty battery", lambda t: {"devices": _with(t.devices, 0, energy_mwh=-0.01)},
         "energy out of bounds: d1 storage 0"),
    ],
)  # fmt: skip
def test_each_invariant_catches_its_violation(label, changes, expected):
    good = _period()
    messages = check_period(replace(good, **changes(good)))
    assert len(messages) == 1 and messages[0].startswith(expected), (label, messages)


def test_a_violated_invariant_is_an_error_and_an_event_and_the_run_goes_on(
    make_model, monkeypatch, caplog
):
    import market_sim.model

    monkeypatch.setattr(market_sim.model, "check_period", lambda tables: ["made up"])
    sim = make_model("hybrid")
    sim.period = 48
    sim.run(periods=2)
    events = sim.tables()["events"].query("kind == 'invariant_violated'")
    assert list(events.period) == [48, 49] and (events.message == "made up").all()
    assert "invariant violated: made up" in caplog.text


def test_check_makes_the_run_exit_non_zero_with_one_line(tmp_path, capsys, monkeypatch):
    import market_sim.runner
    from market_sim.runner import RunReport

    def checked(scenario, out, models, days, progress, check, **options):
        assert check
        links = pd.DataFrame({"link": ["a -> b"], "messages": [1], "bytes": [1]})
        return [RunReport("hybrid", tmp_path, {"x": 1.0}, links, 3, 1.0, 2)]

    monkeypatch.setattr(market_sim.runner, "run_scenario", checked)
    status = main(["run", str(QUICKSTART), "--out", str(tmp_path), "--no-progress", "--check"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert "2 invariant violations (hybrid: 2)" in err


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 400),
    seed=st.integers(0, 2**32 - 1),
    text=st.booleans(),
    specials=st.sampled_from(["none", "nan", "inf"]),
)
def test_sums_by_adds_as_a_pandas_groupby_does(n: int, seed: int, text: bool, specials: str):
    """The compensated sums per key are bit for bit the groupby's, NaN values and keys and
    infinities included (the payments and surplus KPIs depend on the last bit)."""
    rng = np.random.default_rng(seed)
    if text:  # a roles column, some missing
        keys = np.array(rng.choice(["tso", "dso", "ter", None, np.nan], n), dtype=object)
    else:  # numpy text, as np.where makes it
        keys = rng.choice(["ter", "prosumer"], n)
    values = rng.normal(size=n) * 10.0 ** rng.integers(-3, 8, n)
    if n and specials != "none":
        values[rng.integers(0, n, 3)] = np.nan if specials == "nan" else np.inf
    expected = pd.Series(values).groupby(keys).sum().to_dict()
    got = _sums_by(keys, values)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert np.array_equal([got[key]], [value], equal_nan=True)
        assert np.signbit(got[key]) == np.signbit(value)
