"""Settlement of the balancing market: who pays whom, for what, per period.

Pricing is pay-as-clear (the balancing price at the resource's bus, per MWh of injection change:
an up activation is paid the price, a down activation pays it back) or pay-as-bid (each offer's
own price per MWh of service). The TSO pays transmission resources directly and DER through their
aggregator (the DSO, where it is their aggregator), which keeps a fee per MWh and passes the rest
to the prosumer. A DER that does not deliver what it was dispatched pays an imbalance charge on
the undelivered energy, through its aggregator, to the TSO. Every amount is a transfer from a
payer to a payee, so the sums balance.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from market_sim.registry import PRICING_RULES
from market_sim.tables import column_dtypes
from market_sim.types import signed_mw

TSO = "tso"

#: Columns and dtypes of the period's ``dispatch`` and ``settlement`` tables.
DISPATCH_DTYPES = column_dtypes("dispatch")
SETTLEMENT_DTYPES = column_dtypes("settlement")


def pay_as_clear(direction, mw, bid_price, bus_price) -> tuple[np.ndarray, np.ndarray]:
    """The balancing price at the resource's bus, per MWh of injection change: an up
    activation is paid it, a down activation pays it back. Returns (price, EUR/h)."""
    return bus_price, bus_price * signed_mw(direction, mw)


def pay_as_bid(direction, mw, bid_price, bus_price) -> tuple[np.ndarray, np.ndarray]:
    """Each offer's own price per MWh of service. Returns (price, EUR/h)."""
    return bid_price, bid_price * mw


class SettlementTerms(Protocol):
    """The settlement's parameters (a scenario's ``settlement`` config satisfies it)."""

    pricing: str  # a name in market_sim.registry.PRICING_RULES
    aggregator_fee_eur_per_mwh: float
    imbalance_price_factor: float


def dispatch_table(
    accepted: pd.DataFrame,
    offers: pd.DataFrame,
    delivery: pd.DataFrame,
    bids: pd.DataFrame,
    interface_bus: dict[str, int],
    bus_price: pd.Series,
    hours: float,
    terms: SettlementTerms,
    der_price: pd.Series | None = None,
) -> pd.DataFrame:
    """The period's ``dispatch`` table (without the period column): TER and DER rows priced.

    ``accepted``: the clearing's accepted offers (offer_id, mw); ``offers``: what was offered
    (TER rows carry ``element``); ``delivery``: bid_id, buyer, mw (dispatched), delivered_mw
    of the DER; ``bus_price``: balancing price per transmission bus, EUR/MWh; ``der_price``:
    price of injection at a DER bid's own location (index bid_id, EUR/MWh) where the clearing
    priced it there (TSO-managed: its DLMP), else the DER is priced at its interface bus.
    """
    rule = PRICING_RULES.load(terms.pricing)
    table = pd.concat(
        [_ter_rows(accepted, offers), _der_rows(delivery, bids, interface_bus)],
        ignore_index=True,
    )
    table = table[table.mw > 1e-9].reset_index(drop=True)
    # the TSO settles by the pricing rule; a DSO's local purchase is paid as bid
    by_dso = (table.buyer != TSO).to_numpy()
    terms_of_service = (
        table.direction,
        table.mw.to_numpy(float),
        table.bid_price_eur_per_mwh.to_numpy(float),
        _location_price(table, bus_price, der_price),
    )
    tso_price, tso_rate = rule(*terms_of_service)
    dso_price, dso_rate = pay_as_bid(*terms_of_service)
    price = np.where(by_dso, dso_price, tso_price)
    table["price_eur_per_mwh"] = price
    table["payment_eur"] = np.where(by_dso, dso_rate, tso_rate) * hours
    undelivered = (table.mw - table.delivered_mw).clip(lower=0.0)
    table["imbalance_eur"] = undelivered * np.abs(price) * terms.imbalance_price_factor * hours
    return table[list(DISPATCH_DTYPES)].astype(DISPATCH_DTYPES)


def _location_price(
    table: pd.DataFrame, bus_price: pd.Series, der_price: pd.Series | None
) -> np.ndarray:
    """Price of injection where each row is settled: its bus, or a DER's own location."""
    price = bus_price.reindex(table.bus.to_numpy()).to_numpy(float)
    if der_price is None or not len(der_price):
        return price
    own = der_price.reindex(table.id.to_numpy()).to_numpy(float)
    located = (table.resource == "der").to_numpy() & ~np.isnan(own)
    return np.where(located, own, price)


def _ter_rows(accepted: pd.DataFrame, offers: pd.DataFrame) -> pd.DataFrame:
    """Accepted generator offers (negative offer ids) as dispatch rows."""
    ter_columns = ["offer_id", "element", "bus", "direction", "price_eur_per_mwh"]
    ter = accepted.loc[accepted.offer_id < 0, ["offer_id", "mw"]].merge(
        offers.reindex(columns=ter_columns), on="offer_id"
    )
    return pd.DataFrame(
        {
            "resource": "ter",
            "id": ter.offer_id,
            "name": ter.element,
            "dso": "",
            "prosumer": -1,
            "buyer": TSO,
            "bus": ter.bus,
            "direction": ter.direction,
            "mw": ter.mw,
            "delivered_mw": ter.mw,
            "bid_price_eur_per_mwh": ter.price_eur_per_mwh,
        }
    )


def _der_rows(
    delivery: pd.DataFrame, bids: pd.DataFrame, interface_bus: dict[str, int]
) -> pd.DataFrame:
    """Dispatched DER (with what they delivered) as dispatch rows at their interface bus."""
    der = delivery.merge(bids.drop(columns="mw"), on="bid_id")
    return pd.DataFrame(
        {
            "resource": "der",
            "id": der.bid_id,
            "name": der.aggregator,
            "dso": der.dso,
            "prosumer": der.prosumer,
            "buyer": der.buyer,
            "bus": der.dso.map(interface_bus),
            "direction": der.direction,
            "mw": der.mw,
            "delivered_mw": der.delivered_mw,
            "bid_price_eur_per_mwh": der.price_eur_per_mwh,
        }
    )


def settlement_table(dispatch: pd.DataFrame, hours: float, terms: SettlementTerms) -> pd.DataFrame:
    """Net amount per party and item for the period (positive: the party receives).

    Rows without the period column: party, role, item, amount_eur.
    """
    ter = dispatch[dispatch.resource == "ter"]
    der = dispatch[dispatch.resource == "der"]
    prosumer = "prosumer " + der.prosumer.astype(str)
    fee = terms.aggregator_fee_eur_per_mwh * der.mw * hours
    transfers = [
        # payer, payee, item, amount (each a Series aligned with its rows)
        (TSO, ter.name, "balancing_energy", ter.payment_eur),
        (der.buyer, der.name, "balancing_energy", der.payment_eur),
        (der.name, prosumer, "balancing_energy", der.payment_eur),
        (prosumer, der.name, "aggregator_fee", fee),
        (prosumer, der.name, "imbalance", der.imbalance_eur),
        (der.name, der.buyer, "imbalance", der.imbalance_eur),
    ]
    legs = []
    for payer, payee, item, amount in transfers:
        if not len(amount):
            continue
        for party, sign in ((payee, 1.0), (payer, -1.0)):
            party = party if isinstance(party, pd.Series) else pd.Series(party, amount.index)
            legs.append(pd.DataFrame({"party": party, "item": item, "amount_eur": sign * amount}))
    if not legs:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SETTLEMENT_DTYPES.items()})
    table = pd.concat(legs, ignore_index=True)
    table = table.groupby(["party", "item"], as_index=False, sort=True)["amount_eur"].sum()
    # a DSO is a DSO also where it is its DER's aggregator (dso_managed+dso_is_aggregator)
    aggregators, dsos = set(der.name), (set(der.buyer) - {TSO}) | set(der.dso)
    table.insert(1, "role", table.party.map(lambda p: _role(p, aggregators, dsos)))
    return table


def _role(party: str, aggregators: set[str], dsos: set[str]) -> str:
    if party == TSO:
        return "tso"
    if party in dsos:
        return "dso"
    if party.startswith("prosumer "):
        return "prosumer"
    return "aggregator" if party in aggregators else "ter"
