"""Settlement: each party's role, where a name could be read as more than one."""

from __future__ import annotations

import numpy as np

from market_sim.config import SettlementConfig
from market_sim.markets.settlement import DISPATCH_DTYPES, settlement_columns


def _dispatch() -> dict[str, np.ndarray]:
    """Two generator rows and DER rows bought by the TSO and by a DSO; DSO "d1" is its own
    DER's aggregator (dso_managed with dso_is_aggregator), "d2" a buyer only."""
    rows = [
        # resource, name, dso, prosumer, buyer, mw, payment, imbalance
        ("ter", "gen 0", "", -1, "tso", 2.0, 20.0, 0.0),
        ("ter", "gen 1", "", -1, "tso", 1.0, 9.0, 0.0),
        ("der", "d1", "d1", 7, "tso", 0.5, 5.0, 0.5),
        ("der", "agg", "d2", 8, "d2", 0.25, 2.0, 0.0),
        ("der", "agg", "d2", 7, "tso", 0.75, 6.0, 0.0),
    ]
    names = ("resource", "name", "dso", "prosumer", "buyer", "mw", "payment_eur")
    columns = {c: np.array([r[i] for r in rows]) for i, c in enumerate(names)}
    columns["imbalance_eur"] = np.array([r[7] for r in rows])
    for c, t in DISPATCH_DTYPES.items():
        if c in columns:
            columns[c] = columns[c].astype(object if t == "string" else t)
    return columns


def test_every_party_has_the_first_role_that_applies_tso_dso_prosumer_aggregator_ter():
    terms = SettlementConfig(pricing="pay_as_clear", aggregator_fee_eur_per_mwh=1.0)
    table = settlement_columns(_dispatch(), 0.25, terms)
    role = dict(zip(table["party"].tolist(), table["role"].tolist(), strict=False))
    assert role == {
        "tso": "tso",
        "d1": "dso",  # an aggregator too, but a DSO first
        "d2": "dso",
        "agg": "aggregator",
        "prosumer 7": "prosumer",
        "prosumer 8": "prosumer",
        "gen 0": "ter",
        "gen 1": "ter",
    }
    assert list(table["party"]) == sorted(table["party"])  # sorted by party, then item
    assert table["role"].dtype == object
