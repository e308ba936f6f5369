"""Each coordination model on hand-built stub agents and a stub period: no SimBench network, no
solver. The stubs decide in ways a reader can check by hand (a DSO validates half of every bid;
the TSO accepts every offer in full), so the tests see the message sequence of each model step
by step and the outcome it hands to delivery."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import mesa
import numpy as np
import pandas as pd
import pytest
import simpy

from market_sim.agents.aggregator import Aggregator
from market_sim.config import CommunicationConfig, DsoMarketConfig, GatesConfig
from market_sim.coordination.period import Parties, PeriodContext, PeriodInputs
from market_sim.markets.aggregation import aggregate_offer, disaggregate
from market_sim.markets.central import IntegratedResult
from market_sim.markets.offers import bid_offers, empty_offers
from market_sim.markets.tso_markets import TsoPlan
from market_sim.registry import COORDINATION_MODELS
from market_sim.schedule import MESSAGE_COLUMNS, PeriodClock, Post
from market_sim.types import BID_COLUMNS, DirectionStats, Injections, ValidationResult

PERIOD = 5
# bid_id, aggregator, dso, direction, mw, price
BIDS = [
    (0, "pool", "north", "up", 2.0, 10.0),
    (1, "pool", "north", "down", 1.0, 3.0),
    (2, "coop", "north", "up", 4.0, 12.0),
    (4, "pool", "south", "up", 6.0, 11.0),
    (5, "pool", "south", "down", 8.0, 2.0),
]


def _bids() -> pd.DataFrame:
    rows = pd.DataFrame(BIDS, columns=["bid_id", "aggregator", "dso", "direction", "mw", "price"])
    return pd.DataFrame(
        {
            "bid_id": rows.bid_id,
            "prosumer": rows.bid_id // 2,
            "aggregator": rows.aggregator,
            "dso": rows.dso,
            "element": "storage",
            "element_index": rows.bid_id // 2,
            "bus": 1,
            "direction": rows.direction,
            "mw": rows.mw,
            "price_eur_per_mwh": rows.price,
        }
    ).astype(BID_COLUMNS)


@dataclass
class Clearing:
    """The stub TSO's clearing: every offer accepted in full."""

    accepted: pd.DataFrame
    ok: bool = True
    message: str = ""
    cost_eur: float = 0.0
    n_variables: int = 3
    n_constraints: int = 2


@dataclass
class StubTSO:
    name: str = "tso"
    interface_buses: dict[str, int] = field(default_factory=lambda: {"north": 3, "south": 7})
    cleared: list[pd.DataFrame] = field(default_factory=list)

    def clear(self, plan, offers: pd.DataFrame) -> Clearing:
        self.cleared.append(offers)
        return Clearing(offers[["offer_id", "mw"]])

    def clear_bids(self, plan, bids: pd.DataFrame) -> Clearing:
        return self.clear(plan, bid_offers(bids, self.interface_buses))

    def cost_with_all(self, plan, bids: pd.DataFrame) -> float:
        return 0.0

    def ter_offers(self, plan) -> pd.DataFrame:
        return empty_offers()

    def clear_integrated(self, plan, bids, state, dsos, flows=None):
        """Accepts every up bid of a reporting DSO (its distribution rows allow no down)."""
        accepted = {}
        for name in dsos:
            mine = bids[(bids.dso == name) & (bids.mw > 1e-9)]
            accepted[name] = np.where(mine.direction == "up", mine.mw, 0.0)
        offers = bids[bids.dso.isin(list(dsos))]
        mw = np.concatenate([accepted[n] for n in dsos]) if dsos else np.zeros(0)
        table = pd.DataFrame({"offer_id": offers.bid_id.to_numpy(np.int64), "mw": mw})
        return Clearing(table), IntegratedResult(accepted, accepted, (), 1, 4)


@dataclass
class StubDSO:
    """Validates half of every bid; its forecast is its operating point."""

    name: str
    interface_bus: int
    config: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(flexibility_area=False))
    validated: list[pd.DataFrame] = field(default_factory=list)

    def validate(self, bids: pd.DataFrame, forecast: Injections) -> ValidationResult:
        self.validated.append(bids)
        table = pd.DataFrame(
            {"bid_id": bids.bid_id.to_numpy(np.int64), "validated_mw": bids.mw / 2, "reason": "ok"}
        )
        stats = DirectionStats(float(bids.mw.sum()), float(table.validated_mw.sum()))
        return ValidationResult(table, 1, True, method="stub", directions={"all": stats})

    def operating_point(self, forecast: Injections, result: ValidationResult) -> Injections:
        return forecast

    def operational_data(self, forecast: Injections) -> tuple[pd.DataFrame, None]:
        table = pd.DataFrame({"element": ["load"], "p_mw": [float(forecast.p_mw["load"].sum())]})
        return table, None

    def aggregated_offer(self, validated: pd.DataFrame, first_id: int) -> pd.DataFrame:
        return aggregate_offer(validated, self.interface_bus, first_id)

    def disaggregate(self, validated, offer, accepted) -> pd.DataFrame:
        taken = offer.merge(accepted[["offer_id", "mw"]], on="offer_id", suffixes=("_o", ""))
        return disaggregate(validated, taken.groupby("direction")["mw"].sum().to_dict()).assign(
            buyer="tso"
        )


def _point() -> Injections:
    zeros = {t: np.zeros(1) for t in ("load", "sgen", "storage")}
    return Injections({**zeros, "load": np.array([1.5])}, dict(zeros))


def _run(model: str):
    world = mesa.Model()
    aggregators = {
        "pool": Aggregator(world, "pool", ["north", "south"]),
        "coop": Aggregator(world, "coop", ["north"]),
    }
    dsos = {"north": StubDSO("north", 3), "south": StubDSO("south", 7)}
    parties = Parties(StubTSO(), dsos, aggregators)
    coordination = COORDINATION_MODELS.load(model)(parties, DsoMarketConfig(), 3000.0)
    env = simpy.Environment(initial_time=PERIOD * 900.0)
    post = Post(env, CommunicationConfig())
    events: list[tuple[str, str]] = []
    clock = PeriodClock(PERIOD, PERIOD * 900.0, 900.0, GatesConfig())
    context = PeriodContext(
        clock, post, lambda role, stage, f, *a: f(*a), lambda *event: events.append(event)
    )
    forecasts = {n: _point() for n in dsos}
    plan = TsoPlan(schedule=None, need_mw=np.array([5.0]), load_mw=np.array([0.0]))
    inputs = PeriodInputs(PERIOD, _bids(), forecasts, plan)
    process = env.process(coordination.run(context, inputs))
    env.run()
    log = pd.DataFrame(post.log, columns=list(MESSAGE_COLUMNS))
    return process.value, log, parties, coordination, events


def _links(log: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    return [(r.step, r.sender, r.receiver, r.kind) for r in log.itertuples()]


def test_hybrid_steps_and_outcome():
    outcome, log, parties, _, events = _run("hybrid")
    assert _links(log) == [
        ("1", "pool", "tso", "bids"),
        ("1", "coop", "tso", "bids"),
        ("2", "tso", "north", "bids_informed"),
        ("2", "tso", "south", "bids_informed"),
        ("3a", "north", "north", "validation"),
        ("3a", "south", "south", "validation"),
        ("3b", "north", "tso", "validated_bids"),
        ("3b", "south", "tso", "validated_bids"),
        ("4", "tso", "pool", "dispatch"),
        ("4", "tso", "coop", "dispatch"),
    ]
    # each DSO validated exactly the bids in its network
    assert [set(v.bid_id) for v in parties.dsos["north"].validated] == [{0, 1, 2}]
    assert [set(v.bid_id) for v in parties.dsos["south"].validated] == [{4, 5}]
    # the TSO cleared the validated half of every bid, at its DSO's interface bus
    (offers,) = parties.tso.cleared
    assert dict(zip(offers.offer_id, offers.mw, strict=True)) == {0: 1, 1: 0.5, 2: 2, 4: 3, 5: 4}
    assert dict(zip(offers.offer_id, offers.bus, strict=True)) == {0: 3, 1: 3, 2: 3, 4: 7, 5: 7}
    dispatch = outcome.dispatch.set_index("bid_id").mw.to_dict()
    assert dispatch == {0: 1.0, 1: 0.5, 2: 2.0, 4: 3.0, 5: 4.0}
    assert set(outcome.dispatch.buyer) == {"tso"}
    assert outcome.validation.groupby("validator").bid_id.count().to_dict() == {
        "north": 3,
        "south": 2,
    }
    assert len(outcome.records.clearing_runs) == 1 and len(outcome.records.validation_runs) == 2
    assert outcome.operating_points.keys() == {"north", "south"} and not events


def test_tso_managed_steps_and_outcome():
    outcome, log, parties, _, events = _run("tso_managed")
    assert _links(log) == [
        ("1a", "pool", "tso", "bids"),
        ("1a", "coop", "tso", "bids"),
        ("1b", "north", "tso", "operational_data"),
        ("1b", "south", "tso", "operational_data"),
        ("2a", "tso", "tso", "validation"),
        ("2b", "tso", "pool", "dispatch"),
        ("2b", "tso", "coop", "dispatch"),
    ]
    # no DSO validates; the integrated problem's acceptance is the validation
    assert not parties.dsos["north"].validated and not parties.dsos["south"].validated
    validated = outcome.validation.set_index("bid_id").validated_mw.to_dict()
    assert validated == {0: 2.0, 1: 0.0, 2: 4.0, 4: 6.0, 5: 0.0}
    assert set(outcome.validation.validator) == {"tso"}
    assert outcome.dispatch.set_index("bid_id").mw.to_dict() == {0: 2.0, 2: 4.0, 4: 6.0}
    (run,) = outcome.records.clearing_runs
    assert run["distribution_constraints"] == 4 and run["period"] == PERIOD
    assert not events


def test_dso_managed_steps_and_outcome():
    outcome, log, parties, _, events = _run("dso_managed")
    # the TSO answers curves in the order they arrived (the smaller one first)
    assert list(dict.fromkeys(log.step)) == ["1", "2a", "2b", "3", "4"]
    assert sorted(_links(log)) == [
        ("1", "coop", "north", "bids"),
        ("1", "pool", "north", "bids"),
        ("1", "pool", "south", "bids"),
        ("2a", "north", "north", "validation"),
        ("2a", "south", "south", "validation"),
        ("2b", "north", "tso", "aggregated_offer"),
        ("2b", "south", "tso", "aggregated_offer"),
        ("3", "tso", "north", "aggregated_dispatch"),
        ("3", "tso", "south", "aggregated_dispatch"),
        ("4", "north", "coop", "dispatch"),
        ("4", "north", "pool", "dispatch"),
        ("4", "south", "pool", "dispatch"),
    ]
    # the TSO saw one curve step per DSO, direction and price, never an individual bid
    (offers,) = parties.tso.cleared
    assert len(offers) == 5 and set(offers.bus) == {3, 7}
    assert sorted(offers.offer_id) == [0, 1, 2, 1_000_000, 1_000_001]
    # the aggregate, accepted in full, comes back as validated half-bids, a device's up and
    # down exclusive: north meets its larger target (up: bids 0 and 2), so bid 1 (bid 0's
    # device) cannot serve the down target; south meets down (bid 5) before up (bid 4)
    assert outcome.dispatch.set_index("bid_id").mw.to_dict() == {0: 1.0, 2: 2.0, 5: 4.0}
    assert outcome.interface_shortfall_mw == pytest.approx(0.5 + 3.0)
    assert [kind for kind, _ in events] == ["interface_shortfall"] * 2


@pytest.mark.parametrize("model", ["tso_managed", "hybrid", "dso_managed"])
def test_every_message_follows_a_declared_step(model):
    _, log, _, coordination, _ = _run(model)
    roles = {"tso": "tso", "north": "dso", "south": "dso", "pool": "aggregator"}
    declared = {(s.label, s.sender, s.receiver, s.kind.value) for s in coordination.steps}
    for step, sender, receiver, kind in _links(log):
        role = (step, roles.get(sender, "aggregator"), roles.get(receiver, "aggregator"), kind)
        assert role in declared
    assert not log.late.any() and log.time_s.is_monotonic_increasing
