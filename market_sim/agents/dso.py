"""The DSO: operates one distribution network, validates, aggregates and disaggregates."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd

from market_sim.config import DsoConfig
from market_sim.grid.flexibility_area import flexibility_area
from market_sim.grid.injections import injections_table
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.validation import validate
from market_sim.markets.aggregation import aggregate_offer, disaggregate
from market_sim.markets.local_market import LocalMarketResult, clear_local_market
from market_sim.types import Injections, Limits, ValidationResult


class DSO(mesa.Agent):
    """A distribution system operator and its network (loaded once per run)."""

    def __init__(self, model: mesa.Model, config: DsoConfig, network: DistributionNetwork) -> None:
        super().__init__(model)
        self.name = config.name
        self.config = config
        self.network = network
        self.limits = Limits(**config.limits.model_dump())
        self.interface_bus = config.interface_bus  # bus of the transmission case
        self.forecast: Injections | None = None  # this period's baseline
        self.delivered: Injections | None = None  # last period's delivered state

    def forecast_period(self, profile_step: int) -> Injections:
        """The period's baseline operating point from the profiles (the DSO's forecast)."""
        self.forecast = self.network.baseline(profile_step)
        return self.forecast

    def operational_data(self) -> pd.DataFrame:
        """Real-time state of the network: the last delivered set-point of every element.

        This is what the DSO can measure when it must report (before the period is delivered);
        in the first period, when nothing was delivered yet, it is the forecast.
        """
        return injections_table(self.network, self.delivered or self.forecast)

    def validate(self, bids: pd.DataFrame) -> ValidationResult:
        """Validate bids against the period's forecast within this DSO's limits.

        With OLTC control the DSO keeps the taps it validated with: delivery uses them.
        """
        how = self.config.validation
        result = validate(
            self.network,
            self.forecast,
            bids,
            self.limits,
            method=how.method,
            fairness=how.fairness,
            oltc=how.oltc,
        )
        if how.oltc and result.trafo_tap_pos is not None:
            self.forecast.trafo_tap_pos = np.asarray(result.trafo_tap_pos, dtype=float)
        return result

    def flexibility_area(self, validated: pd.DataFrame) -> pd.DataFrame:
        """The P-Q area its validated DER can reach at the interface, as a vertex table.

        Note: the validated bids are assumed *after* any local-market purchase (scheme i).
        """
        area = flexibility_area(self.network, self.forecast, validated, self.limits)
        vertices = area.vertices.reset_index(drop=True)
        return vertices.assign(
            dso=self.name, vertex=np.arange(len(vertices)), verified=area.verified
        )[["dso", "vertex", "p_mw", "q_mvar", "verified"]]

    def aggregated_offer(self, validated: pd.DataFrame, first_id: int) -> pd.DataFrame:
        return aggregate_offer(validated, self.interface_bus, first_id)

    def disaggregate(
        self, validated: pd.DataFrame, offer: pd.DataFrame, accepted: pd.DataFrame
    ) -> pd.DataFrame:
        """Turn the TSO's aggregated dispatch into individual dispatch, cheapest bids first."""
        taken = offer.merge(accepted[["offer_id", "mw"]], on="offer_id", suffixes=("_offer", ""))
        target = taken.groupby("direction")["mw"].sum().to_dict()
        return disaggregate(validated, target).assign(buyer="tso")

    def local_market(self, validated: pd.DataFrame, penalty_eur_per_h: float) -> LocalMarketResult:
        """Buy relief for this period's predicted violations from the validated bids."""
        return clear_local_market(
            self.network, self.forecast, validated, self.limits, penalty_eur_per_h
        )


def validated_bids(bids: pd.DataFrame, result: ValidationResult) -> pd.DataFrame:
    """Bids with ``mw`` replaced by the validated MW (bids cut to zero are dropped)."""
    mw = result.table.set_index("bid_id")["validated_mw"].reindex(bids.bid_id).to_numpy()
    out = bids.assign(mw=np.nan_to_num(mw))
    return out[out.mw > 1e-9].reset_index(drop=True)
