"""The asset-owning DSO behind an independent DSO (iDSO; the paper's Section II-C).

With ``dsos[i].independent_dso`` the operator that validates bids is a neutral party; the
network's assets, and the measurements of them, stay with the DSO that owns them. Every
period the owner sends the iDSO the network status (step 0 of hybrid and dso_managed), and
the iDSO validates at the operating point that status describes. The owner is an agent of its
own (``<name>_owner``, role dso) so that the exchange is a real message between two parties,
logged with its size like every other.
"""

from __future__ import annotations

import mesa
import pandas as pd

from market_sim.grid.network import DistributionNetwork
from market_sim.grid.state import measured_state
from market_sim.types import Injections, Limits


class AssetOwner(mesa.Agent):
    """Owns one distribution network and reports its state to the iDSO operating it."""

    def __init__(
        self, model: mesa.Model, idso: str, network: DistributionNetwork, limits: Limits
    ) -> None:
        super().__init__(model)
        self.idso = idso
        self.name = owner_name(idso)
        self.network = network
        self.limits = limits

    def network_status(self, forecast: Injections) -> pd.DataFrame:
        """The network state table at the period's forecast operating point (set-points, bus
        voltages, branch flows and loadings: :func:`~market_sim.grid.state.network_state_table`)."""
        return measured_state(self.network, forecast, self.limits)


def owner_name(idso: str) -> str:
    """The agent name of the asset owner behind the iDSO ``idso``."""
    return f"{idso}_owner"
