"""Bid books for the grid and validation tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.grid.network import DistributionNetwork
from market_sim.types import BID_COLUMNS, DOWN, UP, Injections


def make_bids(rows: list[tuple[str, int, str, float]]) -> pd.DataFrame:
    """Bid book with BID_COLUMNS from (element, element_index, direction, mw) tuples."""
    df = pd.DataFrame(rows, columns=["element", "element_index", "direction", "mw"])
    df["bid_id"] = np.arange(len(df))
    df["prosumer"] = np.arange(len(df))
    df["aggregator"] = "agg"
    df["dso"] = "dso"
    df["bus"] = 0
    df["price_eur_per_mwh"] = 50.0
    return df[list(BID_COLUMNS)].astype(BID_COLUMNS)


def random_bids(
    dn: DistributionNetwork, inj: Injections, rng: np.random.Generator, scale: float
) -> pd.DataFrame:
    """Large random bids: PV curtailment, load shifts and storage in both directions."""
    net, rows = dn.net, []
    for pos in rng.choice(len(net.sgen), len(net.sgen) // 2, replace=False):
        rows.append(
            ("sgen", net.sgen.index[pos], DOWN, inj.p_mw["sgen"][pos] * rng.uniform(0.3, 1))
        )
    for pos in rng.choice(len(net.load), len(net.load) // 2, replace=False):
        size = net.load["sn_mva"].iloc[pos]
        rows.append(("load", net.load.index[pos], DOWN, scale * size * rng.uniform(0.2, 1)))
        rows.append(("load", net.load.index[pos], UP, inj.p_mw["load"][pos] * rng.uniform(0.3, 1)))
    for pos in rng.choice(len(net.storage), len(net.storage) // 2, replace=False):
        p_max = dn.storage_p_max_mw[pos]
        rows.append(("storage", net.storage.index[pos], UP, scale * p_max * rng.uniform(0.3, 1)))
        rows.append(("storage", net.storage.index[pos], DOWN, scale * p_max * rng.uniform(0.3, 1)))
    return make_bids(rows)
