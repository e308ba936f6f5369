"""Settlement of the balancing market: pay-as-clear at each resource's bus.

A provider is paid ``price x injection change x hours``: an up activation at a positive price is
paid, a down activation pays back the price (a generator moved down saves fuel). The TSO pays
the sum; every payment has a payer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.results import TABLES
from market_sim.types import signed_mw


def settle(
    accepted: pd.DataFrame,
    offers: pd.DataFrame,
    der_dispatch: pd.DataFrame,
    bids: pd.DataFrame,
    interface_bus: dict[str, int],
    bus_price: pd.Series,
    hours: float,
) -> pd.DataFrame:
    """The period's ``dispatch`` table (without the period column), TER and DER rows.

    ``accepted``: the clearing's accepted offers (offer_id, mw); ``offers``: what was offered
    (TER rows carry ``element``); ``der_dispatch``: bid_id, mw as received by the DER;
    ``bus_price``: balancing price per transmission bus, EUR/MWh.
    """
    ter = accepted.loc[accepted.offer_id < 0, ["offer_id", "mw"]].merge(
        offers[["offer_id", "element", "bus", "direction", "price_eur_per_mwh"]], on="offer_id"
    )
    ter = pd.DataFrame(
        {
            "resource": "ter",
            "id": ter.offer_id,
            "name": ter.element,
            "dso": "",
            "bus": ter.bus,
            "direction": ter.direction,
            "mw": ter.mw,
            "bid_price_eur_per_mwh": ter.price_eur_per_mwh,
        }
    )
    der = der_dispatch.merge(bids, on="bid_id", suffixes=("", "_offered"))
    der = pd.DataFrame(
        {
            "resource": "der",
            "id": der.bid_id,
            "name": der.aggregator,
            "dso": der.dso,
            "bus": der.dso.map(interface_bus),
            "direction": der.direction,
            "mw": der.mw,
            "bid_price_eur_per_mwh": der.price_eur_per_mwh,
        }
    )
    table = pd.concat([t for t in (ter, der) if len(t)] or [ter], ignore_index=True)
    table = table[table.mw > 1e-9].reset_index(drop=True)
    price = bus_price.reindex(table.bus.to_numpy()).to_numpy(float)
    table["price_eur_per_mwh"] = price
    table["payment_eur"] = price * signed_mw(table.direction, table.mw) * hours
    columns = [c for c in TABLES["dispatch"] if c != "period"]
    return table[columns].astype({c: TABLES["dispatch"][c][0] for c in columns})


def tso_cost_eur(dispatch: pd.DataFrame) -> float:
    """What the TSO pays for the period's balancing services (the sum of all payments)."""
    return float(np.sum(dispatch.payment_eur))
