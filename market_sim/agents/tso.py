"""The TSO: schedules transmission energy resources, forecasts its balancing need, clears."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd

from market_sim.config import ScenarioConfig
from market_sim.grid.state import injections_from_table
from market_sim.markets.aggregation import bid_offers, empty_offers
from market_sim.markets.central import DistributionModel, IntegratedResult, integrated_clearing
from market_sim.markets.clearing import BalancingMarket, BalancingResult, EnergySchedule, ter_offers
from market_sim.markets.transmission import TransmissionNetwork
from market_sim.types import DOWN, UP


class TSO(mesa.Agent):
    """Transmission system operator and central market operator.

    Its optimisation models are built once here and updated every period.
    """

    name = "tso"

    def __init__(
        self, model: mesa.Model, config: ScenarioConfig, network: TransmissionNetwork
    ) -> None:
        super().__init__(model)
        self.network = network
        self.ramp_mw = config.transmission.ramp_fraction * network.generators.p_max_mw.to_numpy()
        self.reserve_mw = {
            UP: config.transmission.reserve_up_mw,
            DOWN: config.transmission.reserve_down_mw,
        }
        self.reserve_shortfall_mw = 0.0
        self.error_config = config.forecast_error
        self.energy = EnergySchedule(network)
        self.market = BalancingMarket(network, config.voll_eur_per_mwh)
        self.schedule = None
        self.offers = empty_offers()  # the period's TER and DER offers, as cleared
        self.need_mw = np.zeros(len(network.bus_ids))

    def plan(
        self,
        load_factor: float,
        dso_injection_mw: dict[int, float],
        error: float,
        rng: np.random.Generator,
    ):
        """Least-cost TER schedule for the forecast and the period's balancing need.

        Transmission load is the case's load scaled by ``load_factor``, less the forecast net
        injection of each DSO area at its interface bus. The need is the forecast error: an AR(1)
        share of the load (``error`` is its previous value), spread over the buses in proportion
        to their load. Returns the schedule and the error's new value.
        """
        load = self.network.base_load_mw * load_factor
        for bus, mw in dso_injection_mw.items():
            load[self.network.bus_position(bus)[0]] -= mw
        self.schedule = self.energy.solve(load)
        rho, sd = self.error_config.autocorrelation, self.error_config.sd_fraction
        error = rho * error + np.sqrt(1 - rho**2) * sd * rng.normal()
        positive = np.clip(load, 0.0, None)
        self.need_mw = error * positive  # = error * total load * each bus's share
        return self.schedule, error

    def forget_warm_starts(self) -> None:
        """Solve the next period from scratch, as a freshly built TSO would (a checkpoint)."""
        self.energy.forget_warm_start()
        self.market.forget_warm_start()

    def ter_offers(self) -> pd.DataFrame:
        """The generators' balancing offers around the period's schedule."""
        if not self.schedule.ok:
            return empty_offers()
        return ter_offers(self.network, self.schedule, self.ramp_mw)

    def clear(
        self, der_offers: pd.DataFrame, der_rows: tuple[np.ndarray, np.ndarray] | None = None
    ) -> BalancingResult:
        """Clear TER and DER offers against the need, with transmission line limits.

        ``der_rows = (A, b)``: extra constraints ``A q <= b`` on the DER offers (columns in
        the order of ``der_offers``), the TSO-managed model's distribution constraints.
        """
        ter = self.ter_offers()
        self.offers = pd.concat([empty_offers(), ter, der_offers], ignore_index=True)
        a, b, self.reserve_shortfall_mw = self._reserve_rows(self.offers)
        if der_rows is not None and len(der_rows[1]):
            der_a = np.hstack([np.zeros((len(der_rows[1]), len(ter))), der_rows[0]])
            a, b = np.vstack([a, der_a]), np.concatenate([b, der_rows[1]])
        return self.market.clear(self.offers, self.need_mw, self._base_flow(), (a, b))

    def cost_with_all(self, bids: pd.DataFrame) -> float:
        """Balancing cost (EUR/h) had the TSO had every one of these bids: the reference for
        what a DSO taking first costs it. Leaves the period's own clearing state untouched."""
        interface = {n: d.interface_bus for n, d in self.model.dsos.items()}
        offers = pd.concat(
            [empty_offers(), self.ter_offers(), bid_offers(bids, interface)], ignore_index=True
        )
        a, b, _ = self._reserve_rows(offers)
        result = self.market.clear(offers, self.need_mw, self._base_flow(), (a, b))
        return result.cost_eur if result.ok else float("nan")

    def _reserve_rows(self, offers: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, float]:
        """Reserve: the offers of a direction may be activated only up to what leaves the
        configured reserve unused (``sum q <= sum mw - reserve``). Also returns what the
        offers cannot hold back: the reserve shortfall (MW)."""
        rows, bounds, shortfall = [], [], 0.0
        for direction, reserve in self.reserve_mw.items():
            if reserve <= 0:
                continue
            mine = (offers.direction == direction).to_numpy(float)
            room = float(offers.mw.to_numpy(float) @ mine)
            shortfall += max(0.0, reserve - room)
            rows.append(mine)
            bounds.append(max(0.0, room - reserve))
        if not rows:
            return np.zeros((0, len(offers))), np.zeros(0), shortfall
        return np.vstack(rows), np.array(bounds), shortfall

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

    def _base_flow(self) -> np.ndarray:
        """Branch flows of the schedule (zero if it failed: then only the balancing is cleared)."""
        if self.schedule.ok:
            return self.schedule.flow_mw
        return np.zeros(self.network.n_branches)
