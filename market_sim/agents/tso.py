"""The TSO: forecasts its load and balancing need, and calls its markets to schedule and clear."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd

from market_sim.config import ScenarioConfig
from market_sim.grid.state import injections_from_table
from market_sim.markets.balancing import BalancingResult
from market_sim.markets.central import DistributionModel, IntegratedResult, integrated_clearing
from market_sim.markets.offers import bid_offers
from market_sim.markets.schedule import ScheduleResult
from market_sim.markets.transmission import TransmissionNetwork
from market_sim.markets.tso_markets import Rows, TsoMarkets, TsoPlan
from market_sim.types import DOWN, UP


class TSO(mesa.Agent):
    """Transmission system operator and central market operator.

    Its markets (:class:`~market_sim.markets.tso_markets.TsoMarkets`) are built once here and
    updated every period; the agent decides what to plan for and when to clear.
    """

    name = "tso"

    def __init__(
        self, model: mesa.Model, config: ScenarioConfig, network: TransmissionNetwork
    ) -> None:
        super().__init__(model)
        self.network = network
        self.markets = TsoMarkets(
            network,
            ramp_mw=config.transmission.ramp_fraction * network.generators.p_max_mw.to_numpy(),
            reserve_mw={
                UP: config.transmission.reserve_up_mw,
                DOWN: config.transmission.reserve_down_mw,
            },
            voll_eur_per_mwh=config.voll_eur_per_mwh,
        )
        self.error_config = config.forecast_error
        self._error = 0.0  # AR(1) state of the forecast error, share of load
        self.period_plan: TsoPlan | None = None  # the plan of the period being cleared

    @property
    def schedule(self) -> ScheduleResult:
        """The period's energy schedule (read by the engine's results)."""
        return self.period_plan.schedule

    @property
    def need_mw(self) -> np.ndarray:
        """The period's balancing need per bus (read by the coordination models and KPIs)."""
        return self.period_plan.need_mw

    def plan(self, load_factor: float, dso_injection_mw: dict[int, float]) -> TsoPlan:
        """Least-cost TER schedule for the forecast and the period's balancing need.

        Transmission load is the case's load scaled by ``load_factor``, less the forecast net
        injection of each DSO area at its interface bus. The need is the forecast error: an AR(1)
        share of the load, spread over the buses in proportion to their load.
        """
        load = self.network.base_load_mw * load_factor
        for bus, mw in dso_injection_mw.items():
            load[self.network.bus_position(bus)[0]] -= mw
        schedule = self.markets.schedule(load)
        rho, sd = self.error_config.autocorrelation, self.error_config.sd_fraction
        self._error = (
            rho * self._error
            + np.sqrt(1 - rho**2) * sd * self.model.streams["forecast_error"].normal()
        )
        positive = np.clip(load, 0.0, None)
        # = error * total load * each bus's share
        self.period_plan = TsoPlan(schedule, self._error * positive)
        return self.period_plan

    def ter_offers(self) -> pd.DataFrame:
        """The generators' balancing offers around the period's schedule."""
        return self.markets.ter_offers(self.schedule)

    def clear(self, der_offers: pd.DataFrame, der_rows: Rows | None = None) -> BalancingResult:
        """Clear TER and DER offers against the period's need, with transmission line limits.

        ``der_rows = (A, b)``: extra constraints ``A q <= b`` on the DER offers (columns in
        the order of ``der_offers``), the TSO-managed model's distribution constraints.
        """
        return self.markets.clear(self.period_plan, der_offers, der_rows)

    def cost_with_all(self, bids: pd.DataFrame) -> float:
        """Balancing cost (EUR/h) had the TSO had every one of these bids: the reference for
        what a DSO taking first costs it."""
        interface = {n: d.interface_bus for n, d in self.model.dsos.items()}
        return self.markets.cost_with_all(self.period_plan, bid_offers(bids, interface))

    def clear_integrated(
        self, bids: pd.DataFrame, operational_data: dict[str, pd.DataFrame], dsos: dict
    ) -> tuple[BalancingResult, IntegratedResult]:
        """TSO-managed: validate and dispatch in one problem over every reporting DSO network.

        The TSO holds the DSOs' network models but sees only the state each reported; it
        cannot use DSO assets (taps stay as reported).
        """
        interface = {n: d.interface_bus for n, d in dsos.items()}
        models = [
            DistributionModel.at(
                name,
                dso.network,
                injections_from_table(dso.network, operational_data[name]),
                bids[(bids.dso == name) & (bids.mw > 1e-9)],
                dso.limits,
            )
            for name, dso in dsos.items()
        ]
        return integrated_clearing(
            models, lambda b, rows: self.clear(bid_offers(b, interface), rows)
        )
