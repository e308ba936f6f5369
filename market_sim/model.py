"""The market model: agents (mesa), time (simpy), and one market period in the order it happens.

forecast -> bids -> coordination (validation, clearing, dispatch: the coordination model's
steps) -> the conflicted DSOs' neutral counterfactual (a what-if, not dispatched) -> delivery
-> wear (assets' aging) -> settlement -> record. ``MarketModel.step()`` runs one period, so a
notebook can step through a day; each stage hands the next one values, and what carries from
one period to the next is in one :class:`~market_sim.run_state.RunState`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

import mesa
import numpy as np
import pandas as pd
import pyarrow as pa
import simpy

from market_sim import kernels
from market_sim.agents.aggregator import Aggregator
from market_sim.agents.asset_owner import AssetOwner
from market_sim.agents.dso import DSO
from market_sim.agents.prosumer import ProsumerPopulation
from market_sim.agents.tso import TSO
from market_sim.config import ScenarioConfig
from market_sim.coordination.period import (
    Parties,
    PeriodContext,
    PeriodInputs,
    PeriodOutcome,
    accepted_none,
)
from market_sim.counterfactual import Thermal, counterfactual_rows
from market_sim.counterfactual import period_kpis as withheld_kpis
from market_sim.delivery import Delivered, baseline, deliver
from market_sim.grid.lightsim_model import forget_models
from market_sim.grid.network import DistributionNetwork, profile_step
from market_sim.invariants import PeriodTables, check_period
from market_sim.kpis import NetworkCheck, period_kpis
from market_sim.markets.offers import empty_offers
from market_sim.markets.settlement import (
    DISPATCH_DTYPES,
    SETTLEMENT_DTYPES,
    dispatch_columns,
    settlement_columns,
)
from market_sim.markets.transmission import TransmissionNetwork
from market_sim.recording import (
    record_balancing,
    record_baseline,
    record_delivery,
    record_frames,
    record_kpis,
    record_outcome,
    record_prices,
    record_wear,
)
from market_sim.registry import COORDINATION_MODELS
from market_sim.results import Recorder, arrow_table, column_array, schema
from market_sim.run_state import RunState
from market_sim.scenario import check_data, load_networks
from market_sim.schedule import MESSAGE_COLUMNS, PeriodClock, Post
from market_sim.types import Injections, typed_frame
from market_sim.wear import Wear, period_wear

log = logging.getLogger(__name__)


class MarketModel(mesa.Model):
    """One scenario under one coordination model.

    ``state`` resumes a run from a saved :class:`RunState` (the same config, networks and
    seed); ``checkpoint_periods`` is how often a run may be saved and resumed (default: a
    day): at each such boundary the solvers forget their warm starts, so that a resumed run
    computes exactly what the uninterrupted one does. ``check`` checks the invariants of
    :mod:`market_sim.invariants` after every period: a violation is a logged error and an
    ``invariant_violated`` event.
    """

    def __init__(
        self,
        config: ScenarioConfig,
        networks: dict[str, DistributionNetwork] | None = None,
        transmission: TransmissionNetwork | None = None,
        state: RunState | None = None,
        checkpoint_periods: int | None = None,
        check: bool = False,
    ) -> None:
        super().__init__(rng=config.seed)
        if len(config.models) != 1:
            raise ValueError(f"a MarketModel runs one coordination model, got {config.models}")
        self.config = config
        self.networks = networks or load_networks(config)
        self.transmission = transmission or check_data(config)
        self.period_h = config.period_minutes / 60
        self.checkpoint_periods = checkpoint_periods or config.periods_per_day
        #: solver state (warm starts, lightsim2grid grids) starts fresh in a model's first
        #: period, as in a resumed run's: the networks may come warm from another model
        self._fresh_solvers = True
        self.check = check

        self.tso = TSO(self, config, self.transmission)
        self.dsos = {d.name: DSO(self, d, self.networks[d.name]) for d in config.dsos}
        self.aggregators = {a.name: Aggregator(self, a.name, a.dsos) for a in config.aggregators}
        self.population = ProsumerPopulation(config.prosumers, self.period_h)
        covering = {d: [a.name for a in config.aggregators if d in a.dsos] for d in self.dsos}
        self.population.build(self, self.networks, covering)
        #: the asset owner behind each independent DSO (built after the prosumers, whose
        #: agent ids are their bids' prosumer ids)
        self.owners = {
            d.name: AssetOwner(self, d.name, self.networks[d.name], self.dsos[d.name].limits)
            for d in config.dsos
            if d.independent_dso
        }
        self.coordination = COORDINATION_MODELS.load(config.models[0])(
            Parties(self.tso, self.dsos, self.aggregators, self.owners),
            config.dso_market,
            config.voll_eur_per_mwh,
        )
        self.state = state or RunState.initial(
            config.seed, self.population.initial_energy(), config.forecast_error.sd_fraction
        )
        self.env = simpy.Environment(initial_time=self.state.time_s)
        self.post = Post(self.env, config.communication, on_late=self._late)
        self.recorder = Recorder()
        self._buses = pd.Index(self.transmission.bus_ids)
        self._load_peak = sum(
            n.profiles["load_p"].sum(axis=1) for n in self.networks.values()
        ).max()

    @property
    def period(self) -> int:
        """The next period to run."""
        return self.state.period

    @period.setter
    def period(self, period: int) -> None:
        """Jump to a period (a notebook or a test looking at one time of day)."""
        self.state.period = period

    # -- bookkeeping used by the stages --------------------------------------------------------
    def record_event(self, kind: str, message: str) -> None:
        """A failure of this period (solver, power flow, late message): recorded, run goes on."""
        log.debug("period %d: %s: %s", self.period, kind, message)
        self.recorder.add_row("events", (self.period, self.env.now, kind, message))

    def timed(self, role: str, stage: str, func: Callable, *args: Any) -> Any:
        """Call ``func`` and record its wall time for ``role`` and ``stage``."""
        t0 = time.perf_counter()
        result = func(*args)
        seconds = time.perf_counter() - t0
        self.recorder.add_row("timings", (self.period, role, stage, seconds))
        return result

    def forecasts(self, period: int) -> dict[str, Injections]:
        """Each DSO's forecast of ``period``: the baseline its validation starts from."""
        step = profile_step(self.config.start, period, self.config.period_minutes)
        return {name: dso.forecast(step) for name, dso in self.dsos.items()}

    def clock(self, period: int) -> PeriodClock:
        length = self.config.period_minutes * 60.0
        return PeriodClock(period, period * length, length, self.config.gates)

    # -- one period ----------------------------------------------------------------------------
    def step(self) -> None:
        """Run the next market period to its end."""
        if self._fresh_solvers or self.period % self.checkpoint_periods == 0:
            self._fresh_solvers = False
            self.tso.forget_warm_starts()
            for network in self.networks.values():
                forget_models(network)
        clock = self.clock(self.period)
        kernels.take()  # what ran between periods (a notebook's own calls) is not this period's
        t0 = time.perf_counter()
        self.env.process(self._period(clock))
        self.env.run(until=clock.start_s + clock.length_s + 1e-6)
        self.post.clear()
        self._time_period(time.perf_counter() - t0)
        self.state.period += 1
        self.state.time_s = self.env.now
        self.running = self.period < self.config.n_periods  # mesa's end-of-run flag

    def _time_period(self, seconds: float) -> None:
        """The period's whole wall time and the part of it spent in the numerical kernels
        (:mod:`market_sim.kernels`): ``timings`` rows of role ``run``, from which the engine's
        own share of a run is read."""
        for stage, value in ({"period": seconds} | kernels.take()).items():
            self.recorder.add_row("timings", (self.period, "run", stage, value))

    def run(self, periods: int | None = None, progress: Callable[[], None] | None = None) -> None:
        for _ in range(self.config.n_periods if periods is None else periods):
            self.step()
            if progress:
                progress()

    def _period(self, clock: PeriodClock) -> Generator:
        yield self.post.wait_until(clock.start_s)
        inputs, forecasts = self._gate_opening(clock.period)
        context = PeriodContext(clock, self.post, self.timed, self.record_event)
        outcome: PeriodOutcome = yield self.env.process(self.coordination.run(context, inputs))
        thermal = Thermal(self.state.thermal, self._hour_of_day(clock.period), self._minutes)
        counterfactual = counterfactual_rows(
            self.dsos, self.tso, inputs, outcome, thermal, self.timed
        )
        yield self.post.wait_until(clock.delivery)
        delivery, delivered, base = self._deliver(inputs, outcome, forecasts)
        wear = self._wear(clock.period, delivered, base)
        prices = self._balancing_prices(outcome.clearing)
        dispatch, settlement = self._settle(inputs, outcome, delivery, prices)
        self._record(
            inputs, outcome, delivered, base, wear, dispatch, settlement, counterfactual, prices
        )
        if self.check:
            self._check(inputs, outcome, dispatch, settlement)

    def _gate_opening(self, period: int) -> tuple[PeriodInputs, dict[str, Injections]]:
        """Forecasts, bids from every flexible prosumer, and the TSO's schedule and need; and
        the DSOs' forecasts before the devices' repayments, which delivery settles the
        devices' energy against (the same profiles are not read twice a period)."""
        step = profile_step(self.config.start, period, self.config.period_minutes)
        raw = {n: self.timed(n, "forecast", d.forecast, step) for n, d in self.dsos.items()}
        bids = self.timed("prosumers", "bids", self.population.bids, raw, self.state.energy)
        bids = self.coordination.offered(bids)
        forecasts = self.population.with_recovery(raw, self.state.energy)
        load_factor = sum(raw[n].p_mw["load"].sum() for n in self.networks)
        area: dict[int, float] = {}
        for name, dso in self.dsos.items():
            area[dso.interface_bus] = area.get(dso.interface_bus, 0.0) + _net_injection(
                forecasts[name]
            )
        plan, self.state.forecast_error = self.timed(
            "tso",
            "schedule",
            self.tso.plan,
            load_factor / self._load_peak,
            area,
            self.state.forecast_error,
            self.state.streams["forecast_error"],
        )
        if not plan.schedule.ok:
            self.record_event("schedule_failed", plan.schedule.message)
        elif plan.schedule.below_min_mw > 0:
            self.record_event(
                "schedule_below_minimum",
                f"units run {plan.schedule.below_min_mw:.1f} MW below their minimum outputs",
            )
        return PeriodInputs(period, bids, forecasts, plan), raw

    def _deliver(
        self, inputs: PeriodInputs, outcome: PeriodOutcome, forecasts: dict[str, Injections]
    ) -> tuple[dict[str, np.ndarray], dict[str, Delivered], dict[str, Delivered]]:
        """Each dispatched DER delivers (or not); one AC power flow per DSO network, after one
        of the same operating point with no DER activated (the baseline, for the KPIs).
        ``forecasts``: the DSOs' forecasts before the devices' repayments."""
        base = self.timed("grid", "baseline", baseline, self.dsos, outcome.operating_points)
        delivery = self.population.delivery(
            outcome.dispatch,
            self.config.settlement.delivery_reliability,
            self.state.streams["delivery"],
        )
        delivered_mw = {"bid_id": delivery["bid_id"], "mw": delivery["delivered_mw"]}
        delivered = self.timed(
            "grid", "delivery", deliver, self.dsos, outcome.operating_points, delivered_mw,
            inputs.bids,
        )  # fmt: skip
        self.state.energy = self.population.deliver(self.state.energy, delivered_mw, forecasts)
        self.state.delivered = {name: d.injections for name, d in delivered.items()}
        for stage, flows in (("baseline", base), ("delivery", delivered)):
            for name, d in flows.items():
                if d.runpp_reason:
                    self.record_event(
                        "power_flow_fallback",
                        f"{name}: {stage}: pandapower runpp: {d.runpp_reason}",
                    )
                if not d.power_flow.converged:
                    self.record_event("power_flow_not_converged", f"{name}: {stage} power flow")
        return delivery, delivered, base

    @property
    def _minutes(self) -> int:
        return self.config.period_minutes

    def _hour_of_day(self, period: int) -> float:
        """The middle of ``period`` in hours of its day (a run starts at 0:00): the ambient's."""
        return ((period + 0.5) * self._minutes / 60) % 24

    def _wear(
        self, period: int, delivered: Mapping[str, Delivered], base: Mapping[str, Delivered]
    ) -> tuple[dict[str, Wear], dict[str, Wear]]:
        """Each network's transformer aging and line loading hours in the period: after
        delivery and at the baseline, each carried on from its own thermal state."""
        minutes, hour = self._minutes, self._hour_of_day(period)
        self.state.thermal, after = self.timed(
            "grid", "wear", period_wear, self.dsos, delivered, self.state.thermal, hour, minutes
        )
        self.state.baseline_thermal, before = self.timed(
            "grid", "wear", period_wear, self.dsos, base, self.state.baseline_thermal, hour,
            minutes,
        )  # fmt: skip
        return after, before

    def _settle(
        self,
        inputs: PeriodInputs,
        outcome: PeriodOutcome,
        delivery: Mapping[str, np.ndarray],
        prices: pd.Series,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The period's dispatch priced by the pricing rule (``prices``: the balancing price
        per bus), and who pays whom: the columns of their tables, which the record stage and
        the KPIs read (no table is built)."""
        clearing = outcome.clearing
        ok = clearing is not None and clearing.ok
        accepted = clearing.accepted if ok else accepted_none()
        offers = clearing.offers if clearing is not None else empty_offers()
        cfg = self.config.settlement
        located = clearing.der_price_eur_per_mwh if ok else None
        dispatch = self.timed(
            "market", "settlement", dispatch_columns, accepted, offers, delivery, inputs.bids,
            self.tso.interface_buses, prices, self.period_h, cfg, located,
        )  # fmt: skip
        return dispatch, settlement_columns(dispatch, self.period_h, cfg)

    def _balancing_prices(self, clearing) -> pd.Series:
        """The balancing price per transmission bus (NaN if the clearing failed or did not
        run), on the run's one index of the buses (a new index per period cost as much as the
        table); made once a period, for the settlement and the KPIs."""
        if clearing is None or not clearing.ok:
            return pd.Series(np.nan, index=self._buses)
        return pd.Series(clearing.price_eur_per_mwh, index=self._buses)

    def _record(
        self,
        inputs: PeriodInputs,
        outcome: PeriodOutcome,
        delivered: Mapping[str, Delivered],
        base: Mapping[str, Delivered],
        wear: tuple[Mapping[str, Wear], Mapping[str, Wear]],
        dispatch: Mapping[str, np.ndarray],
        settlement: Mapping[str, np.ndarray],
        counterfactual: pd.DataFrame,
        prices: pd.Series,
    ) -> None:
        """Write the period's rows into the results tables, then its KPIs (``prices``: the
        balancing price per bus)."""
        period, rec = inputs.period, self.recorder
        record_outcome(rec, period, outcome)
        rec.add_frame("counterfactual", counterfactual, period=period)
        record_frames(rec, period, {"bids": inputs.bids, "validation": outcome.validation})
        devices = self.population.device_columns(self.state.energy)
        for table, columns in (
            ("devices", devices),
            ("dispatch", dispatch),
            ("settlement", settlement),
        ):
            rec.add_columns(table, columns, period=period)
        buses = self._buses.to_numpy()  # the run's index's own array: no copy per period
        schedule, clearing = inputs.plan.schedule, outcome.clearing
        if schedule.ok:
            record_prices(rec, period, "schedule", buses, schedule.price_eur_per_mwh)
        if clearing is not None and clearing.ok:
            record_prices(rec, period, "balancing", buses, clearing.price_eur_per_mwh)
        record_delivery(rec, period, {n: d.network for n, d in self.dsos.items()}, delivered)
        record_wear(rec, period, wear[0])
        record_balancing(rec, period, self.transmission, inputs.plan, clearing,
                         self.config.record.balancing_coefficients)  # fmt: skip
        record_baseline(rec, period, {n: d.network for n, d in self.dsos.items()}, inputs.forecasts)
        kpis = self._kpis(
            inputs, outcome, delivered, base, wear, dispatch, settlement, counterfactual, prices
        )
        record_kpis(rec, period, kpis)

    def _kpis(
        self, inputs, outcome, delivered, base, wear, dispatch, settlement, counterfactual, prices
    ) -> list[tuple[str, float, str]]:
        schedule, clearing = inputs.plan.schedule, outcome.clearing
        records = outcome.records
        # the period's log rows as columns, without the roles message_table adds: not needed
        rows = self._latest_messages(inputs.period)
        columns = list(zip(*rows, strict=True)) or [()] * len(MESSAGE_COLUMNS)
        messages = dict(zip(MESSAGE_COLUMNS, columns, strict=True))
        grid = {
            n: NetworkCheck(d.power_flow, d.violated, base[n].power_flow, base[n].violated)
            for n, d in delivered.items()
        }
        return period_kpis(
            hours=self.period_h,
            need_mw=float(inputs.plan.need_mw.sum()),
            schedule_cost_eur_per_h=schedule.cost_eur_per_h if schedule.ok else np.nan,
            schedule_below_min_mw=schedule.below_min_mw,
            bids=inputs.bids,
            validation=outcome.validation,
            dispatch=dispatch,
            settlement=settlement,
            bus_price=prices,
            unserved_mw=sum(_unserved(clearing)),
            voll_eur_per_mwh=self.config.voll_eur_per_mwh,
            grid=grid,
            messages=messages,
            reserve_shortfall_mw=clearing.reserve_shortfall_mw if clearing is not None else 0.0,
            priority_effects={
                "tso_extra_cost_eur_per_h": records.tso_extra_cost_eur_per_h,
                "dso_shortfall_mw": records.dso_shortfall_mw,
            },
            wear=wear[0],
            baseline_wear=wear[1],
            withheld=withheld_kpis(counterfactual),
        )

    def _check(self, inputs, outcome, dispatch, settlement) -> None:
        """The invariants over the period's tables; each violation an error and an event."""
        up, down = _unserved(outcome.clearing)
        tables = PeriodTables(
            self.period_h,
            inputs.bids,
            outcome.validation,
            typed_frame(dispatch, DISPATCH_DTYPES),
            typed_frame(settlement, SETTLEMENT_DTYPES),
            self.population.device_state(self.state.energy),
            float(inputs.plan.need_mw.sum()),
            up,
            down,
            outcome.interface_shortfall_mw,
        )
        for message in check_period(tables):
            log.error("period %d: invariant violated: %s", inputs.period, message)
            self.record_event("invariant_violated", message)

    def _latest_messages(self, period: int) -> list[tuple]:
        """The log rows of ``period``, the one just run: the tail of the log, found from its
        end so that recording a period costs the same in a year-long run as on its first day."""
        log = self.post.log
        start = len(log)
        while start and log[start - 1][0] == period:
            start -= 1
        return log[start:]

    def message_table(self, rows: list[tuple] | None = None) -> pd.DataFrame:
        """The message log (or some of its rows) as a ``messages`` table: the log's columns,
        then the roles of sender and receiver, built column by column."""
        rows = self.post.log if rows is None else rows
        if not rows:  # no values to infer the dtypes from: object, as a frame of no rows has
            return pd.DataFrame(columns=[*MESSAGE_COLUMNS, "sender_role", "receiver_role"])
        return pd.DataFrame(_message_columns(rows, self.role))

    def role(self, name: str) -> str:
        if name == TSO.name:
            return "tso"
        owners = {o.name for o in self.owners.values()}
        return "dso" if name in self.dsos or name in owners else "aggregator"

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every results table of the periods run so far (since the last :meth:`take_tables`):
        for short runs in a notebook or a test; long runs write chunks to disk instead."""
        return {name: table.to_pandas() for name, table in self._tables(self.post.log).items()}

    def take_tables(self) -> dict[str, pa.Table]:
        """The tables of the periods run since the last call, which the model then forgets,
        as Arrow tables of their documented schemas: a long run writes them to disk as a
        chunk (no DataFrame in between), so that its memory does not grow."""
        tables = self._tables(self.post.take_log())
        self.recorder.clear()
        return tables

    def _tables(self, log_rows: list[tuple]) -> dict[str, pa.Table]:
        tables = self.recorder.arrow_tables()
        messages = schema("messages").empty_table()
        if log_rows:
            columns = {c: column_array(v) for c, v in _message_columns(log_rows, self.role).items()}
            messages = arrow_table("messages", columns)
        tables["messages"] = messages
        return tables

    def _late(self, m) -> None:
        self.record_event("late_message", f"{m.kind} {m.sender}->{m.receiver} step {m.step}")


def _message_columns(rows: list[tuple], role: Callable[[str], str]) -> dict[str, tuple]:
    """Message log rows (at least one) as columns, with the roles of sender and receiver."""
    columns = dict(zip(MESSAGE_COLUMNS, zip(*rows, strict=True), strict=True))
    columns["sender_role"] = tuple(role(name) for name in columns["sender"])
    columns["receiver_role"] = tuple(role(name) for name in columns["receiver"])
    return columns


def _unserved(clearing) -> tuple[float, float]:
    """(up, down) MW the TSO's clearing left unserved; NaN if it failed or did not run."""
    if clearing is None or not clearing.ok:
        return np.nan, np.nan
    return clearing.unserved_up_mw, clearing.unserved_down_mw


def _net_injection(inj: Injections) -> float:
    """Lossless estimate of an area's net injection (MW): what the TSO plans with."""
    return float(inj.p_mw["sgen"].sum() - inj.p_mw["load"].sum() - inj.p_mw["storage"].sum())
