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

from collections.abc import Mapping
from typing import Protocol

import numpy as np
import pandas as pd

from market_sim.columns import Columns, distinct, numbers, positions, text
from market_sim.markets.group_sum import group_sum
from market_sim.registry import PRICING_RULES
from market_sim.tables import column_dtypes
from market_sim.types import signed_mw, typed_frame

TSO = "tso"
#: The settlement's items, in the order of their names (the table is sorted by party, item).
ITEMS = tuple(sorted(("balancing_energy", "aggregator_fee", "imbalance")))
_ITEM_NAMES = np.array(ITEMS, dtype=object)

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


def dispatch_columns(
    accepted: pd.DataFrame,
    offers: pd.DataFrame,
    delivery: Columns,
    bids: pd.DataFrame,
    interface_bus: dict[str, int],
    bus_price: pd.Series,
    hours: float,
    terms: SettlementTerms,
    der_price: pd.Series | None = None,
) -> dict[str, np.ndarray]:
    """The period's ``dispatch`` rows (without the period column) as numpy columns of the
    table's dtypes (text as Python strings): TER and DER rows priced.

    ``accepted``: the clearing's accepted offers (offer_id, mw); ``offers``: what was offered
    (TER rows carry ``element``); ``delivery``: the columns bid_id, buyer, mw (dispatched),
    delivered_mw of the DER; ``bus_price``: balancing price per transmission bus, EUR/MWh;
    ``der_price``: price of injection at a DER bid's own location (index bid_id, EUR/MWh) where
    the clearing priced it there (TSO-managed: its DLMP), else the DER is priced at its
    interface bus.

    The rows are built as numpy columns (a period has a few hundred): pandas' cost per
    operation would be most of the stage's time.
    """
    rule = PRICING_RULES.load(terms.pricing)
    ter, der = _ter_rows(accepted, offers), _der_rows(delivery, bids, interface_bus)
    table = {c: np.concatenate([ter[c], der[c]]) for c in ter}
    kept = table["mw"] > 1e-9
    table = {c: values[kept] for c, values in table.items()}
    mw, delivered_mw = table["mw"], table["delivered_mw"]
    # the TSO settles by the pricing rule; a DSO's local purchase is paid as bid
    by_dso = table["buyer"] != TSO
    terms_of_service = (
        table["direction"],
        mw,
        table["bid_price_eur_per_mwh"],
        _location_price(table, bus_price, der_price),
    )
    tso_price, tso_rate = rule(*terms_of_service)
    dso_price, dso_rate = pay_as_bid(*terms_of_service)
    price = np.where(by_dso, dso_price, tso_price)
    table["price_eur_per_mwh"] = price
    table["payment_eur"] = np.where(by_dso, dso_rate, tso_rate) * hours
    undelivered = _clip_negative(mw - delivered_mw)
    table["imbalance_eur"] = undelivered * np.abs(price) * terms.imbalance_price_factor * hours
    return _typed_columns(table, DISPATCH_DTYPES)


def _typed_columns(columns: Columns, dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    """``columns`` as numpy arrays of the declared ``dtypes``, in their order (text as object
    arrays of Python strings, as the recorder keeps them and :func:`typed_frame` reads them)."""
    return {
        c: np.asarray(columns[c], dtype=object if t == "string" else t) for c, t in dtypes.items()
    }


def _location_price(
    table: dict[str, np.ndarray], bus_price: pd.Series, der_price: pd.Series | None
) -> np.ndarray:
    """Price of injection where each row is settled: its bus, or a DER's own location."""
    price = prices_at(bus_price, table["bus"])
    if der_price is None or not len(der_price):
        return price
    own = prices_at(der_price, table["id"])
    located = (table["resource"] == "der") & ~np.isnan(own)
    return np.where(located, own, price)


def prices_at(series: pd.Series, keys: np.ndarray) -> np.ndarray:
    """``series.reindex(keys)`` as floats, NaN where a key is absent (no Series built): the
    price at each row's bus (or bid)."""
    at = positions(series.index.to_numpy(), keys)
    found = at >= 0
    values = np.full(len(keys), np.nan)
    values[found] = series.to_numpy(float)[at[found]]
    return values


def _clip_negative(values: np.ndarray) -> np.ndarray:
    """Negative values set to 0, NaN and -0.0 kept: what ``Series.clip(lower=0.0)`` gives."""
    return np.where(values < 0.0, 0.0, values)


def _ter_rows(accepted: pd.DataFrame, offers: pd.DataFrame) -> dict[str, np.ndarray]:
    """Accepted generator offers (negative offer ids) as dispatch rows, in accepted order;
    an accepted id that was not offered has no row (offer ids are unique)."""
    if offers.columns.empty:  # no clearing ran: nothing was offered
        offers = pd.DataFrame(columns=["offer_id", "bus", "direction", "price_eur_per_mwh"])
    ids = numbers(accepted, "offer_id", np.int64)
    generator = ids < 0
    at = positions(numbers(offers, "offer_id", np.int64), ids[generator])
    offered = at >= 0
    at, mw = at[offered], numbers(accepted, "mw")[generator][offered]
    n = len(at)
    # an empty offer book (no clearing) has no element column
    element = text(offers, "element")[at] if "element" in offers else np.full(n, None, object)
    return {
        "resource": np.full(n, "ter", dtype=object),
        "id": ids[generator][offered],
        "name": element,
        "dso": np.full(n, "", dtype=object),
        "prosumer": np.full(n, -1, dtype=np.int64),
        "buyer": np.full(n, TSO, dtype=object),
        "bus": numbers(offers, "bus", np.int64)[at],
        "direction": text(offers, "direction")[at],
        "mw": mw,
        "delivered_mw": mw,
        "bid_price_eur_per_mwh": numbers(offers, "price_eur_per_mwh")[at],
    }


def _der_rows(
    delivery: Columns, bids: pd.DataFrame, interface_bus: dict[str, int]
) -> dict[str, np.ndarray]:
    """Dispatched DER (with what they delivered) as dispatch rows at their interface bus, in
    delivery order; a delivered bid that is not in the bid book has no row."""
    bid_id = numbers(delivery, "bid_id", np.int64)
    at = positions(numbers(bids, "bid_id", np.int64), bid_id)
    booked = at >= 0
    at = at[booked]
    dso = text(bids, "dso")[at]
    return {
        "resource": np.full(len(at), "der", dtype=object),
        "id": bid_id[booked],
        "name": text(bids, "aggregator")[at],
        "dso": dso,
        "prosumer": numbers(bids, "prosumer", np.int64)[at],
        "buyer": text(delivery, "buyer")[booked],
        "bus": np.array([interface_bus[d] for d in dso], dtype=np.int64),
        "direction": text(bids, "direction")[at],
        "mw": numbers(delivery, "mw")[booked],
        "delivered_mw": numbers(delivery, "delivered_mw")[booked],
        "bid_price_eur_per_mwh": numbers(bids, "price_eur_per_mwh")[at],
    }


def settlement_table(dispatch: Columns, hours: float, terms: SettlementTerms) -> pd.DataFrame:
    """Net amount per party and item for the period (positive: the party receives).

    Rows without the period column: party, role, item, amount_eur, sorted by party and item.
    """
    return typed_frame(settlement_columns(dispatch, hours, terms), SETTLEMENT_DTYPES)


def settlement_columns(
    dispatch: Columns, hours: float, terms: SettlementTerms
) -> dict[str, np.ndarray]:
    """The rows of :func:`settlement_table` as numpy columns (text as Python strings).

    Parties and items are summed as integer codes (:class:`_Parties`, positions in
    :data:`ITEMS`) that sort as their names do: a period's thousand transfer rows name a few
    dozen parties, and naming each row's party cost more than the sums.
    """
    ter, der = _rows_by_resource(dispatch)
    names = _Parties(ter["name"], der["buyer"], der["name"], der["prosumer"])
    tso, generator, buyer, aggregator, prosumer = names.codes
    fee = terms.aggregator_fee_eur_per_mwh * der["mw"] * hours
    transfers = [
        # payer, payee, item, amount (codes and arrays aligned with the rows of ter or der)
        (tso, generator, "balancing_energy", ter["payment_eur"]),
        (buyer, aggregator, "balancing_energy", der["payment_eur"]),
        (aggregator, prosumer, "balancing_energy", der["payment_eur"]),
        (prosumer, aggregator, "aggregator_fee", fee),
        (prosumer, aggregator, "imbalance", der["imbalance_eur"]),
        (aggregator, buyer, "imbalance", der["imbalance_eur"]),
    ]
    parties, items, amounts = [], [], []
    for payer, payee, item, amount in transfers:
        if not len(amount):
            continue
        for party, sign in ((payee, 1.0), (payer, -1.0)):
            parties.append(np.full(len(amount), party) if np.ndim(party) == 0 else party)
            items.append(np.full(len(amount), ITEMS.index(item)))
            amounts.append(sign * amount)
    if not amounts:
        return _typed_columns({c: [] for c in SETTLEMENT_DTYPES}, SETTLEMENT_DTYPES)
    party, item, amount_eur = _net(
        np.concatenate(parties), np.concatenate(items), np.concatenate(amounts)
    )
    # a DSO is a DSO also where it is its DER's aggregator (dso_managed+dso_is_aggregator)
    aggregators, dsos = set(der["name"]), (set(der["buyer"]) - {TSO}) | set(der["dso"])
    role = _roles(names.names, aggregators, dsos)[party]
    return {"party": names.names[party], "role": role, "item": item, "amount_eur": amount_eur}


class _Parties:
    """The parties of a period's settlement as integer codes that sort as their names do.

    ``codes``: the TSO's code, then the codes of the generators (the TER rows' names), the
    buyers, the aggregators and the prosumers (``prosumer <id>``) of the DER rows, row by
    row; ``names``: the name of each code. The names are hashed and sorted once, each
    prosumer's built once however many bids it has.
    """

    def __init__(
        self, generator: np.ndarray, buyer: np.ndarray, aggregator: np.ndarray, prosumer_id
    ) -> None:
        ids, id_code = np.unique(prosumer_id, return_inverse=True)
        prosumers = np.array([f"prosumer {p}" for p in ids.tolist()], dtype=object)
        columns = [np.array([TSO], dtype=object), generator, buyer, aggregator, prosumers]
        self.names, rank = distinct(np.concatenate(columns))
        tso, generator_code, buyer_code, aggregator_code, prosumer_code = _pieces(
            rank, [len(c) for c in columns]
        )
        self.codes = (tso[0], generator_code, buyer_code, aggregator_code, prosumer_code[id_code])


def _pieces(values: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """``values`` cut into consecutive pieces of ``lengths`` (views): ``np.split`` at their
    ends, without its per-piece bookkeeping, which costs ten times the slicing."""
    pieces, start = [], 0
    for n in lengths:
        pieces.append(values[start : start + n])
        start += n
    return pieces


def _rows_by_resource(dispatch: Columns) -> tuple[dict[str, np.ndarray], ...]:
    """The columns settlement reads, of the TER rows and of the DER rows of the dispatch."""
    columns = {
        "name": text(dispatch, "name"),
        "dso": text(dispatch, "dso"),
        "prosumer": numbers(dispatch, "prosumer", np.int64),
        "buyer": text(dispatch, "buyer"),
        "mw": numbers(dispatch, "mw"),
        "payment_eur": numbers(dispatch, "payment_eur"),
        "imbalance_eur": numbers(dispatch, "imbalance_eur"),
    }
    resource = text(dispatch, "resource")
    # one comparison of the text column per kind, not one per column read
    rows = (resource == kind for kind in ("ter", "der"))
    return tuple({c: values[at] for c, values in columns.items()} for at in rows)


def _net(
    party: np.ndarray, item: np.ndarray, amount: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum of ``amount`` per (party, item), sorted by party then item (``party``: codes that
    sort as the parties' names, :class:`_Parties`; ``item``: positions in :data:`ITEMS`,
    whose order is their names'). Returns each sum's party code, item and amount.

    Summed on integer codes with the compensated sum of a groupby in row order
    (:func:`~market_sim.markets.group_sum.group_sum`), the one the settlement has always
    used, so the amounts stay the same to the last bit. A code spans every item, present or
    not: it sorts by party then item all the same, without a ``np.unique`` of the rows.
    """
    group, net = group_sum(party * len(ITEMS) + item, amount)
    return group // len(ITEMS), _ITEM_NAMES[group % len(ITEMS)], net


def _roles(party: np.ndarray, aggregators: set[str], dsos: set[str]) -> np.ndarray:
    """Each party's role: the TSO, a DSO, a prosumer (named "prosumer ..."), an aggregator,
    else a generator (TER); the first that applies. Looked up name by name in sets: a
    period has a few hundred parties, where each ``np.isin`` of text sorts them again."""
    return np.array([_role(p, aggregators, dsos) for p in party.tolist()], dtype=object)


def _role(party: str, aggregators: set[str], dsos: set[str]) -> str:
    """The role of one party (see :func:`_roles`)."""
    if party == TSO:
        return "tso"
    if party in dsos:
        return "dso"
    if party.startswith("prosumer "):
        return "prosumer"
    return "aggregator" if party in aggregators else "ter"
