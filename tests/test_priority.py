"""Priority rules on a two-need, one-DER case: each rule gives its documented winner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_sim.markets.priority import Needs, allocate

#: one DER of 5 MW at 20 EUR/MWh; the TSO needs 5 MW of balancing, the DSO 5 MW of relief
DER = pd.DataFrame({"bid_id": [7], "mw": [5.0], "price_eur_per_mwh": [20.0]})


def _needs(tso_penalty=3000.0, dso_penalty=500.0, dso_critical=True):
    tso = Needs("tso", np.array([5.0]), np.array([[1.0]]), tso_penalty, critical=False)
    dso = Needs("dso", np.array([5.0]), np.array([[1.0]]), dso_penalty, critical=dso_critical)
    return tso, dso


def _winner(allocation):
    return set(allocation.table.side)


@pytest.mark.parametrize(
    "rule,winner",
    [
        ("tso_first", {"tso"}),
        ("dso_first", {"dso"}),
        ("criticality", {"dso"}),
        ("economic", {"tso"}),
    ],
)
def test_each_rule_gives_its_documented_winner(rule, winner):
    allocation = allocate(rule, DER, *_needs())
    assert _winner(allocation) == winner
    loser = ({"tso", "dso"} - winner).pop()
    # the other side is left with its whole need, at its penalty
    assert allocation.unmet_mw[loser] == pytest.approx(5.0)
    penalty = 3000.0 if loser == "tso" else 500.0
    assert allocation.cost_eur_per_h[loser] == pytest.approx(5.0 * penalty)
    assert allocation.cost_eur_per_h[winner.pop()] == pytest.approx(5.0 * 20.0)


def test_economic_follows_value_and_criticality_follows_violation():
    # the DSO's violation is now the costlier shortfall: the joint clearing gives it the DER
    tso, dso = _needs(tso_penalty=100.0, dso_penalty=800.0)
    assert _winner(allocate("economic", DER, tso, dso)) == {"dso"}
    # a DSO need that prevents no violation loses the criticality rule to a costlier TSO need
    tso, dso = _needs(dso_critical=False)
    assert _winner(allocate("criticality", DER, tso, dso)) == {"tso"}


def test_shared_der_is_split_when_it_is_large_enough():
    der = DER.assign(mw=8.0)
    allocation = allocate("tso_first", der, *_needs())
    mw = allocation.table.set_index("side").mw
    assert mw["tso"] == pytest.approx(5.0) and mw["dso"] == pytest.approx(3.0)
    assert allocation.unmet_mw == pytest.approx({"tso": 0.0, "dso": 2.0})


def test_unknown_rule_is_a_clear_error():
    with pytest.raises(ValueError, match="allowed: tso_first, dso_first"):
        allocate("first_come", DER, *_needs())
