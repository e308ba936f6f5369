"""The market model: agents (mesa), time (simpy), and one market period in the order it happens.

bids -> validation -> clearing -> dispatch (the coordination model's steps) -> delivery ->
settlement -> KPIs. ``MarketModel.step()`` runs one period, so a notebook can step through a day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from typing import Any

import mesa
import numpy as np
import pandas as pd
import simpy

from market_sim.agents.aggregator import Aggregator
from market_sim.agents.dso import DSO
from market_sim.agents.prosumer import ProsumerPopulation
from market_sim.agents.tso import TSO
from market_sim.config import ScenarioConfig
from market_sim.coordination import REGISTRY, PeriodOutcome
from market_sim.coordination.base import accepted_none, new_priority_effects
from market_sim.delivery import deliver
from market_sim.grid.network import DistributionNetwork, load_network, profile_step
from market_sim.grid.powerflow import injections_table
from market_sim.kpis import period_kpis
from market_sim.markets.offers import empty_offers
from market_sim.markets.settlement import dispatch_table, settlement_table
from market_sim.markets.transmission import TransmissionNetwork, load_case
from market_sim.results import TABLES, Recorder
from market_sim.schedule import MESSAGE_COLUMNS, PeriodClock, Post

log = logging.getLogger(__name__)


def load_networks(config: ScenarioConfig) -> dict[str, DistributionNetwork]:
    """Every DSO network of a scenario, loaded once (share them between runs of one scenario)."""
    return {
        d.name: load_network(d.simbench_code, d.pv_scale, d.storage_scale, d.load_scale)
        for d in config.dsos
    }


class MarketModel(mesa.Model):
    """One scenario under one coordination model."""

    def __init__(
        self,
        config: ScenarioConfig,
        networks: dict[str, DistributionNetwork] | None = None,
        transmission: TransmissionNetwork | None = None,
    ) -> None:
        super().__init__(rng=config.seed)
        # One seed decides every draw; each random process has its own stream, so that what
        # one model does (how many DER it dispatches) never shifts another's draws (the
        # forecast error): the models of a scenario face the same weather and errors.
        self.streams = {
            name: np.random.default_rng([config.seed, k])
            for k, name in enumerate(("forecast_error", "delivery"))
        }
        if len(config.models) != 1:
            raise ValueError(f"a MarketModel runs one coordination model, got {config.models}")
        self.config = config
        self.networks = networks or load_networks(config)
        self.transmission = transmission or load_case(config.transmission.case)
        self.env = simpy.Environment()
        self.post = Post(self.env, config.communication, on_late=self._late)
        self.recorder = Recorder()
        self.period_h = config.period_minutes / 60
        self.period = 0

        self.tso = TSO(self, config, self.transmission)
        self.dsos = {d.name: DSO(self, d, self.networks[d.name]) for d in config.dsos}
        self.aggregators = {a.name: Aggregator(self, a.name, a.dsos) for a in config.aggregators}
        self.population = ProsumerPopulation(config.prosumers, self.period_h)
        covering = {d: [a.name for a in config.aggregators if d in a.dsos] for d in self.dsos}
        self.population.build(self, self.networks, covering)
        self.coordination = REGISTRY[config.models[0]](self)
        self._load_peak = sum(
            n.profiles["load_p"].sum(axis=1) for n in self.networks.values()
        ).max()

    # -- bookkeeping used by the stages --------------------------------------------------------
    def record_event(self, kind: str, message: str) -> None:
        """A failure of this period (solver, power flow, late message): recorded, run goes on."""
        log.debug("period %d: %s: %s", self.period, kind, message)
        self.recorder.add("events", [(self.period, self.env.now, kind, message)])

    def timed(self, role: str, stage: str, func: Callable, *args: Any) -> Any:
        """Call ``func`` and record its wall time for ``role`` and ``stage``."""
        t0 = time.perf_counter()
        result = func(*args)
        self.recorder.add("timings", [(self.period, role, stage, time.perf_counter() - t0)])
        return result

    def clock(self, period: int) -> PeriodClock:
        length = self.config.period_minutes * 60.0
        return PeriodClock(period, period * length, length, self.config.gates)

    # -- one period ----------------------------------------------------------------------------
    def step(self) -> None:
        """Run the next market period to its end."""
        clock = self.clock(self.period)
        self.env.process(self._period(clock))
        self.env.run(until=clock.start_s + clock.length_s + 1e-6)
        self.period += 1

    def run(self, periods: int | None = None, progress: Callable[[], None] | None = None) -> None:
        for _ in range(self.config.n_periods if periods is None else periods):
            self.step()
            if progress:
                progress()

    def _period(self, clock: PeriodClock) -> Generator:
        cfg = self.config
        yield self.post.wait_until(clock.start_s)  # gate opening
        step = profile_step(cfg.start, clock.period, cfg.period_minutes)
        # gate opening: forecasts, bids and the TSO's plan
        forecasts = {
            n: self.timed(n, "forecast", d.forecast_period, step) for n, d in self.dsos.items()
        }
        bids = self.timed("prosumers", "bids", self.population.bids, forecasts)
        load_factor = sum(n.profiles["load_p"][step].sum() for n in self.networks.values())
        area: dict[int, float] = {}
        for name, dso in self.dsos.items():
            area[dso.interface_bus] = area.get(dso.interface_bus, 0.0) + _net_injection(
                forecasts[name]
            )
        plan = self.timed("tso", "schedule", self.tso.plan, load_factor / self._load_peak, area)
        if not plan.schedule.ok:
            self.record_event("schedule_failed", plan.schedule.message)
        # the coordination model's steps: validation, clearing, dispatch
        self.coordination.priority_effects = new_priority_effects()
        process = self.env.process(self.coordination.run(clock, bids))
        outcome: PeriodOutcome = yield process
        # delivery: each dispatched DER delivers (or not); one AC power flow per DSO network
        yield self.post.wait_until(clock.delivery)
        cfg_settle = cfg.settlement
        delivery = self.population.delivery(
            outcome.dispatch, cfg_settle.delivery_reliability, self.streams["delivery"]
        )
        delivered = delivery[["bid_id"]].assign(mw=delivery.delivered_mw)
        networks = self.timed("grid", "delivery", deliver, self.dsos, delivered, bids)
        self.population.deliver(delivered)
        # settlement
        clearing = outcome.clearing
        accepted = clearing.accepted if clearing is not None and clearing.ok else accepted_none()
        interface = {n: d.interface_bus for n, d in self.dsos.items()}
        prices = self._balancing_prices(clearing)
        dispatch = self.timed(
            "market",
            "settlement",
            dispatch_table,
            accepted,
            clearing.offers if clearing is not None else empty_offers(),
            delivery,
            bids,
            interface,
            prices,
            self.period_h,
            cfg_settle,
        )
        settlement = settlement_table(dispatch, self.period_h, cfg_settle)
        self._record(clock.period, bids, outcome, networks, dispatch, settlement)

    def _balancing_prices(self, clearing) -> pd.Series:
        buses = self.transmission.bus_ids
        if clearing is None or not clearing.ok:
            return pd.Series(np.nan, index=buses)
        return pd.Series(clearing.price_eur_per_mwh, index=buses)

    def _record(self, period, bids, outcome, networks, dispatch, settlement) -> None:
        """Write the period's rows into the results tables."""
        rec = self.recorder
        rec.add("bids", bids.assign(period=period))
        rec.add("settlement", settlement.assign(period=period))
        rec.add("devices", self.population.device_state().assign(period=period))
        rec.add("validation", outcome.validation.assign(period=period))
        rec.add("dispatch", dispatch.assign(period=period))
        buses = np.asarray(self.transmission.bus_ids)
        schedule, clearing = self.tso.schedule, outcome.clearing
        if schedule.ok:
            rec.add(
                "prices",
                [
                    (period, "schedule", int(b), float(p))
                    for b, p in zip(buses, schedule.price_eur_per_mwh, strict=True)
                ],
            )
        if clearing is not None and clearing.ok:
            rec.add(
                "prices",
                [
                    (period, "balancing", int(b), float(p))
                    for b, p in zip(buses, clearing.price_eur_per_mwh, strict=True)
                ],
            )
        grid = {}
        for name, (injections, pf) in networks.items():
            dso = self.dsos[name]
            dso.delivered = injections
            grid[name] = pf
            if not pf.converged:
                self.record_event("power_flow_not_converged", f"{name}: delivery power flow")
            rec.add(
                "injections",
                injections_table(dso.network, injections).assign(period=period, dso=name),
            )
            rec.add(
                "grid",
                [
                    (
                        period,
                        name,
                        pf.converged,
                        pf.vm_min_pu,
                        pf.vm_max_pu,
                        pf.max_line_loading_percent,
                        pf.max_trafo_loading_percent,
                        pf.n_voltage_violations,
                        pf.n_line_violations,
                        pf.n_trafo_violations,
                        pf.interface_p_mw,
                        pf.interface_q_mvar,
                    )
                ],
            )
        messages = self.message_table(self._latest_messages(period))
        kpis = period_kpis(
            hours=self.period_h,
            need_mw=float(self.tso.need_mw.sum()),
            schedule_cost_eur_per_h=schedule.cost_eur_per_h if schedule.ok else np.nan,
            bids=bids,
            validation=outcome.validation,
            dispatch=dispatch,
            unserved_mw=(
                clearing.unserved_up_mw + clearing.unserved_down_mw
                if clearing is not None and clearing.ok
                else np.nan
            ),
            voll_eur_per_mwh=self.config.voll_eur_per_mwh,
            grid=grid,
            messages=messages,
            interface_shortfall_mw=outcome.interface_shortfall_mw,
            reserve_shortfall_mw=clearing.reserve_shortfall_mw if clearing is not None else 0.0,
            priority_effects=self.coordination.priority_effects,
        )
        rec.add("kpis", [(period, n, v, u) for n, v, u in kpis])

    def _latest_messages(self, period: int) -> list[tuple]:
        """The log rows of ``period``, the one just run: the tail of the log, found from its
        end so that recording a period costs the same in a year-long run as on its first day."""
        log = self.post.log
        start = len(log)
        while start and log[start - 1][0] == period:
            start -= 1
        return log[start:]

    def message_table(self, rows: list[tuple] | None = None) -> pd.DataFrame:
        """The message log (or some of its rows) as a ``messages`` table."""
        rows = self.post.log if rows is None else rows
        table = pd.DataFrame(rows, columns=list(MESSAGE_COLUMNS))
        table["sender_role"] = table.sender.map(self.role)
        table["receiver_role"] = table.receiver.map(self.role)
        return table

    def role(self, name: str) -> str:
        if name == TSO.name:
            return "tso"
        return "dso" if name in self.dsos else "aggregator"

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every results table of the run so far."""
        tables = self.recorder.tables()
        messages = self.message_table()
        tables["messages"] = messages[list(TABLES["messages"])].astype(
            {c: t for c, (t, _) in TABLES["messages"].items()}
        )
        return tables

    def _late(self, m) -> None:
        self.record_event("late_message", f"{m.kind} {m.sender}->{m.receiver} step {m.step}")


def _net_injection(inj) -> float:
    """Lossless estimate of an area's net injection (MW): what the TSO plans with."""
    return float(inj.p_mw["sgen"].sum() - inj.p_mw["load"].sum() - inj.p_mw["storage"].sum())
