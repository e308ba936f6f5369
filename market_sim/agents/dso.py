"""The DSO: operates one distribution network, validates, aggregates and disaggregates."""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd

from market_sim.columns import numbers, positions
from market_sim.config import DsoConfig
from market_sim.grid.aging import with_overrides
from market_sim.grid.flexibility_area import flexibility_area
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail
from market_sim.grid.state import measured
from market_sim.grid.validation import validate
from market_sim.grid.validation_limits import validation_limits
from market_sim.markets.aggregation import aggregate_offer, disaggregate, target_by_direction
from market_sim.markets.local_market import LocalMarketResult, clear_local_market
from market_sim.types import Injections, Limits, ValidationResult


class DSO(mesa.Agent):
    """A distribution system operator and its network (loaded once per run).

    It holds no state of a period: the operating points it works at are passed in and handed
    back, so that each stage sees only what the stage before it produced.

    Two sets of limits (issue 9): ``limits``, the network's physical limits, which delivery is
    judged by, violations are counted against, the TSO's integrated problem (tso_managed)
    uses, and the DSO's local market buys relief for (a need others pay for is a physical
    one); and ``validation_limits``, what the DSO validates bids and computes its P-Q area
    with: the physical ones moved by its conflict of interest
    (:mod:`market_sim.grid.validation_limits`), equal to them for a neutral or independent DSO.
    """

    def __init__(self, model: mesa.Model, config: DsoConfig, network: DistributionNetwork) -> None:
        super().__init__(model)
        self.name = config.name
        self.config = config
        self.network = network
        self.limits = Limits(**config.limits.model_dump())
        aging = config.aging
        self.validation_limits = validation_limits(
            self.limits,
            config.conflict_of_interest,
            network.net.trafo.sn_mva.to_numpy(float),
            with_overrides(aging.thermal.model_dump()),
            aging.ambient_c,
            aging.upgraded_paper,
        )
        self.interface_bus = config.interface_bus  # bus of the transmission case

    def forecast(self, profile_step: int) -> Injections:
        """The period's baseline operating point from the profiles (the DSO's forecast)."""
        return self.network.baseline(profile_step)

    def operational_data(self, forecast: Injections) -> tuple[pd.DataFrame, PowerFlowDetail]:
        """Operational data of the network at the period's forecast operating point: every
        element's set-point, bus voltages, branch flows and loadings
        (:func:`~market_sim.grid.state.network_state_table`), from a power flow of that point,
        and that power flow.

        Why the forecast and not the last delivered state: the TSO linearises the network at
        this point (tso_managed), and the DSOs of the other models validate at their forecast;
        a state one period old would make "validated" mean another thing in each model.

        Why the flow too: the table is what the DSO reports; the TSO would solve the same
        point again from it, and that flow gives the same arrays, bit for bit (its set-points
        are the forecast's doubles, its taps whole numbers), so the step hands it on instead
        (one power flow per DSO and period fewer).
        """
        return measured(self.network, forecast, self.limits)

    @property
    def conflicted(self) -> bool:
        """Its conflict-of-interest parameters are not neutral: the run also computes what a
        neutral validator would have validated (:mod:`market_sim.counterfactual`)."""
        return not self.config.conflict_of_interest.neutral

    def validate(self, bids: pd.DataFrame, forecast: Injections) -> ValidationResult:
        """Validate bids against the period's forecast within this DSO's validation limits."""
        return self._validate(bids, forecast, self.validation_limits)

    def validate_neutral(self, bids: pd.DataFrame, forecast: Injections) -> ValidationResult:
        """What a neutral validator (the physical limits, no wear) validates of the same bids,
        with the same method, fairness and taps: the counterfactual of a conflicted DSO."""
        return self._validate(bids, forecast, self.limits)

    def _validate(self, bids: pd.DataFrame, forecast: Injections, limits: Limits):
        how = self.config.validation
        return validate(
            self.network,
            forecast,
            bids,
            limits,
            method=how.method,
            fairness=how.fairness,
            oltc=how.oltc,
        )

    def operating_point(self, forecast: Injections, result: ValidationResult) -> Injections:
        """The point the DSO operates at after validating: with OLTC control it keeps the taps
        it validated with (its local market, P-Q area and delivery use them)."""
        if not (self.config.validation.oltc and result.trafo_tap_pos is not None):
            return forecast
        point = forecast.copy()
        point.trafo_tap_pos = np.asarray(result.trafo_tap_pos, dtype=float)
        return point

    def flexibility_area(self, validated: pd.DataFrame, point: Injections) -> pd.DataFrame:
        """The P-Q area its validated DER can reach at the interface, as a vertex table.

        Note: the validated bids are assumed *after* any local-market purchase (scheme i).
        """
        area = flexibility_area(self.network, point, validated, self.validation_limits)
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
        return disaggregate(validated, target_by_direction(offer, accepted), buyer="tso")

    def local_market(
        self, validated: pd.DataFrame, point: Injections, penalty_eur_per_h: float
    ) -> LocalMarketResult:
        """Buy relief for this period's predicted violations from the validated bids."""
        return clear_local_market(self.network, point, validated, self.limits, penalty_eur_per_h)


def validated_bids(bids: pd.DataFrame, result: ValidationResult) -> pd.DataFrame:
    """Bids with ``mw`` replaced by the validated MW (bids cut to zero are dropped)."""
    # by position (a few hundred bids: pandas' reindex, assign and boolean index cost more,
    # and so does the hash table of an index built for one lookup)
    table = result.table
    at = positions(numbers(table, "bid_id", np.int64), numbers(bids, "bid_id", np.int64))
    found = at >= 0
    mw = np.zeros(len(at))  # a bid the validation does not name: 0 MW
    mw[found] = np.nan_to_num(numbers(table, "validated_mw")[at[found]])
    kept = np.flatnonzero(mw > 1e-9)
    out = bids.take(kept)
    out.index = pd.RangeIndex(len(kept))  # a new table already: reset_index would copy it
    out["mw"] = mw[kept]
    return out
