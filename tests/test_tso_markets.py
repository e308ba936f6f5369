"""The TSO's offer book: reserve rows, stacking of distribution rows, and what a clearing
result carries (the book as cleared and the reserve shortfall)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from market_sim.markets.offers import bid_offers, empty_offers
from market_sim.markets.tso_markets import (
    TsoMarkets,
    TsoPlan,
    balancing_book,
    reserve_rows,
    stack_rows,
)
from market_sim.types import DOWN, UP


def _book() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "offer_id": [-1, -2, 5, 6],
            "bus": [1, 1, 3, 3],
            "direction": [UP, DOWN, UP, UP],
            "mw": [10.0, 4.0, 2.0, 3.0],
            "price_eur_per_mwh": [50.0, -40.0, 20.0, 30.0],
        }
    )


def test_reserve_rows_hold_back_the_reserve_and_report_what_is_missing():
    (a, b), shortfall = reserve_rows(_book(), {UP: 5.0, DOWN: 6.0})
    # up: 15 MW offered, 10 may be activated; down: 4 MW offered, 6 needed -> 2 MW short
    np.testing.assert_array_equal(a.toarray(), [[1, 0, 1, 1], [0, 1, 0, 0]])
    np.testing.assert_array_equal(b, [10.0, 0.0])
    assert shortfall == 2.0
    (a, b), shortfall = reserve_rows(_book(), {UP: 0.0, DOWN: 0.0})
    assert a.shape == (0, 4) and len(b) == 0 and shortfall == 0.0


@pytest.mark.parametrize("layout", [np.asarray, sparse.csr_array, sparse.coo_matrix])
def test_distribution_rows_are_shifted_past_the_ter_offers(layout):
    reserve, _ = reserve_rows(_book(), {UP: 5.0})
    der = (layout(np.array([[1.0, 0.0], [0.0, 2.0]])), np.array([1.5, 2.5]))
    a, b = stack_rows(reserve, 2, der)
    assert sparse.issparse(a)
    np.testing.assert_array_equal(a.toarray(), [[1, 0, 1, 1], [0, 0, 1, 0], [0, 0, 0, 2]])
    np.testing.assert_array_equal(b, [10.0, 1.5, 2.5])
    assert stack_rows(reserve, 2, None) is reserve


def test_stacked_rows_store_what_scipy_stacking_stores():
    """The CSR arrays joined by hand are scipy's ``hstack``/``vstack`` of the same blocks,
    entry for entry (stored zeros included) and in the same order."""
    reserve, _ = reserve_rows(_book(), {UP: 5.0, DOWN: 1.0})
    der_a = sparse.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]]))
    der_a.data[1] = 0.0  # a stored zero
    der = (der_a, np.array([1.5, 2.5, 3.5]))
    a, b = stack_rows(reserve, 2, der)
    shifted = sparse.hstack([sparse.csr_array((3, 2)), sparse.csr_array(der_a)])
    expected = sparse.vstack([reserve[0], shifted], format="csr")
    for field in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(a, field), getattr(expected, field))
    assert a.shape == expected.shape
    with pytest.raises(ValueError, match="DER columns"):
        stack_rows(reserve, 1, der)


def test_the_offer_book_is_the_concatenation_of_its_tables(case39):
    """Built from arrays, the book is what concatenating the TER and DER tables gives: same
    columns, types and values, with and without devices, and for empty tables."""
    ramp = 0.004 * case39.generators.p_max_mw.to_numpy()
    markets = TsoMarkets(case39, ramp, {UP: 10.0, DOWN: 10.0}, voll_eur_per_mwh=3000.0)
    ter = markets.ter_offers(markets.schedule(case39.base_load_mw))
    bids = pd.DataFrame(
        {
            "bid_id": [3, 4, 8],
            "dso": pd.array(["d", "e", "d"], dtype="string"),
            "direction": pd.array([UP, DOWN, UP], dtype="string"),
            "mw": [2.0, 1.0, 0.0],
            "price_eur_per_mwh": [1.0, -2.0, 3.0],
        }
    )
    der = bid_offers(bids, {"d": int(case39.bus_ids[0]), "e": int(case39.bus_ids[1])})
    curves = der.drop(columns="device")
    for t in (ter, ter.iloc[:0], empty_offers()):
        for d in (der, curves, der.iloc[:0], empty_offers()):
            expected = pd.concat([empty_offers(), t, d], ignore_index=True)
            pd.testing.assert_frame_equal(balancing_book(t, d), expected, check_exact=True)


def test_the_clearing_carries_the_book_and_the_reserve_shortfall(case39):
    ramp = 0.004 * case39.generators.p_max_mw.to_numpy()
    markets = TsoMarkets(case39, ramp, {UP: 1e6, DOWN: 0.0}, voll_eur_per_mwh=3000.0)
    schedule = markets.schedule(case39.base_load_mw)
    plan = TsoPlan(schedule, np.zeros(case39.n_buses), case39.base_load_mw)
    bids = pd.DataFrame(
        {"bid_id": [3], "dso": ["d"], "direction": [UP], "mw": [2.0], "price_eur_per_mwh": [1.0]}
    )
    der = bid_offers(bids, {"d": int(case39.bus_ids[0])})
    result = markets.clear(plan, der)
    ter = markets.ter_offers(schedule)
    assert result.ok and len(result.offers) == len(ter) + 1
    assert result.offers.offer_id.iloc[-1] == 3 and (result.offers.offer_id.iloc[:-1] < 0).all()
    room = result.offers.mw[result.offers.direction == UP].sum()
    assert result.reserve_shortfall_mw == pytest.approx(1e6 - room)
    assert markets.cost_with_all(plan, der) == result.cost_eur
