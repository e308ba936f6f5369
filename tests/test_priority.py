"""The live priority rules (markets.priority.share) on cases small enough to check by hand.

One DER, bid 7: 5 MW up at 20 EUR/MWh, validated in DSO ``d``. The TSO needs 5 MW up; its
generators offer up at 50 EUR/MWh. The DSO's local market bought all 5 MW of bid 7 to relieve a
violation (one need row of 5 units, 1 unit per MW of bid 7). The TSO's clearing is a merit
order: DER first (cheaper), the generators for the rest, so its cost is 20 x DER MW + 50 x the
rest: 100 EUR/h with bid 7, 250 EUR/h without.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from market_sim.markets.local_market import LocalMarketResult
from market_sim.markets.priority import Needs, least_cost_use, left_after, share

VOLL = 3000.0
TER_PRICE = 50.0


@dataclass(frozen=True)
class Cleared:
    ok: bool
    cost_eur: float


def _bids(mw=(5.0,), price=(20.0,), ids=(7,)) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bid_id": np.asarray(ids, np.int64),
            "dso": "d",
            "direction": "up",
            "mw": np.asarray(mw, float),
            "price_eur_per_mwh": np.asarray(price, float),
        }
    )


def _ter(up_mw: float) -> pd.DataFrame:
    return pd.DataFrame(
        {"direction": ["up"], "mw": [up_mw], "price_eur_per_mwh": [TER_PRICE]}
    ).iloc[: 1 if up_mw > 0 else 0]


def _merit_order(need_mw: float):
    """The TSO's clearing: cheapest DER first up to the need, the generators for the rest."""

    def clear(bids: pd.DataFrame):
        mine = bids[bids.mw > 0].sort_values(["price_eur_per_mwh", "bid_id"])
        before = mine.mw.cumsum().to_numpy() - mine.mw.to_numpy()
        mw = np.clip(need_mw - before, 0.0, mine.mw.to_numpy())
        cost = float(mine.price_eur_per_mwh.to_numpy() @ mw + TER_PRICE * (need_mw - mw.sum()))
        dispatch = pd.DataFrame({"bid_id": mine.bid_id.to_numpy(), "mw": mw, "buyer": "tso"})
        return Cleared(True, cost), dispatch[dispatch.mw > 0].reset_index(drop=True)

    return clear


def _request(bought: dict[int, float], bid_ids, effect, need=5.0, penalty=500.0):
    needs = Needs("d", np.array([need]), np.atleast_2d(effect), penalty)
    table = pd.DataFrame({"bid_id": list(bought), "mw": list(bought.values())})
    return {"d": LocalMarketResult(table, needs, np.asarray(bid_ids), ("v",), (), 0.0, 1)}


def _share(rule, bids=None, ter_up_mw=10.0, penalty=500.0, need_mw=5.0):
    bids = _bids() if bids is None else bids
    requests = _request({7: 5.0}, [7], [1.0], penalty=penalty)
    clear = _merit_order(need_mw)
    return share(
        rule,
        bids,
        requests,
        clear,
        _ter(ter_up_mw),
        need_mw,
        VOLL,
        tso_cost=lambda b: clear(b)[0].cost_eur,
    )


def _row(sharing) -> dict[str, float]:
    (row,) = sharing.priority_rows.to_dict("records")
    return row


def _assert_tso_took_it(sharing):
    row = _row(sharing)
    assert (row["bid_id"], row["dso"]) == (7, "d")
    assert (row["dso_requested_mw"], row["dso_mw"], row["tso_mw"]) == (5.0, 0.0, 5.0)
    assert sharing.dso_shortfall_mw == 5.0
    assert sharing.tso_extra_cost_eur_per_h == 0.0  # nobody went before the TSO
    assert sharing.result.cost_eur == 100.0
    assert sharing.dispatch.to_dict("list") == {"bid_id": [7], "mw": [5.0], "buyer": ["tso"]}


def _assert_dso_took_it(sharing):
    row = _row(sharing)
    assert (row["dso_requested_mw"], row["dso_mw"], row["tso_mw"]) == (5.0, 5.0, 0.0)
    assert sharing.dso_shortfall_mw == 0.0
    # the TSO pays the generators 250 instead of 100 EUR/h with bid 7
    assert sharing.result.cost_eur == 250.0
    assert sharing.tso_extra_cost_eur_per_h == 150.0
    assert sharing.dispatch.to_dict("list") == {"bid_id": [7], "mw": [5.0], "buyer": ["d"]}


def test_tso_first_leaves_the_dso_what_the_tso_did_not_take():
    sharing = _share("tso_first")
    assert sharing.ok and _row(sharing)["rule"] == "tso_first"
    _assert_tso_took_it(sharing)


def test_dso_first_gives_the_dso_its_request_and_prices_it_for_the_tso():
    _assert_dso_took_it(_share("dso_first"))


def test_criticality_puts_the_dso_first_when_the_generators_cover_the_tso():
    # generators offer 10 MW up >= the 5 MW need: the TSO is not critical
    _assert_dso_took_it(_share("criticality", ter_up_mw=10.0))


def test_criticality_puts_the_tso_first_when_its_generators_cannot_cover_it():
    # generators offer 2 MW up < the 5 MW need: unserved energy, system security first
    _assert_tso_took_it(_share("criticality", ter_up_mw=2.0))


def test_economic_gives_the_der_to_the_dso_when_its_violation_is_worth_more():
    # DSO gets bid 7: 100 (DER) + 250 (TSO's generators) = 350 EUR/h; the TSO gets it:
    # 100 + 5 x 500 (DSO's unmet need) = 2600 EUR/h
    _assert_dso_took_it(_share("economic", penalty=500.0))


def test_economic_gives_the_der_to_the_tso_when_it_has_no_other_offer():
    # no generator offer: the DSO taking bid 7 leaves 5 MW unserved at VOLL (15000 EUR/h);
    # the TSO taking it leaves the DSO's 5 units unmet at 100 (500 EUR/h)
    sharing = _share("economic", ter_up_mw=0.0, penalty=100.0)
    row = _row(sharing)
    assert (row["dso_requested_mw"], row["dso_mw"], row["tso_mw"]) == (5.0, 0.0, 5.0)
    assert sharing.dso_shortfall_mw == 5.0
    assert sharing.tso_extra_cost_eur_per_h == 0.0  # the TSO's cost with and without: 100


def test_a_large_der_is_split_when_the_tso_goes_first():
    sharing = _share("tso_first", bids=_bids(mw=(8.0,)))
    row = _row(sharing)
    assert (row["dso_requested_mw"], row["dso_mw"], row["tso_mw"]) == (5.0, 3.0, 5.0)
    assert sharing.dso_shortfall_mw == 2.0
    by_buyer = sharing.dispatch.set_index("buyer").mw
    assert by_buyer.to_dict() == {"tso": 5.0, "d": 3.0}


def test_without_a_dso_request_the_tso_clears_everything():
    clear = _merit_order(5.0)
    sharing = share("dso_first", _bids(), {}, clear, _ter(10.0), 5.0, VOLL)
    assert sharing.priority_rows.empty and sharing.dso_shortfall_mw == 0.0
    assert sharing.dispatch.to_dict("list") == {"bid_id": [7], "mw": [5.0], "buyer": ["tso"]}


def test_unknown_rule_is_a_clear_error():
    with pytest.raises(ValueError, match="allowed: 'tso_first', 'dso_first'"):
        _share("first_come")


def test_a_failing_lp_is_a_status_and_the_dso_takes_nothing():
    # a negative penalty makes unmet need profitable: the joint LP is unbounded
    sharing = _share("economic", penalty=-1.0)
    assert not sharing.ok and "LP failed" in sharing.message
    _assert_tso_took_it(sharing)  # the TSO clears every bid; its cost is the reference
    use = least_cost_use(_bids(), [Needs("d", np.array([5.0]), np.ones((1, 1)), -1.0)])
    assert not use.ok and np.array_equal(use["d"], [0.0])


def test_three_thousand_bids_share_fast_and_merit_ordered():
    """Economic rule with 3000 DER (1 MW each at 1, 2, ... 3000 EUR/MWh): the TSO needs 100 MW,
    the DSO 5 units that only bids 0-9 relieve. The 105 cheapest bids are used, the DSO's 5 MW
    among bids 0-9; the dense LP would need 3000 x 6000 matrices."""
    n = 3000
    bids = _bids(mw=np.ones(n), price=np.arange(1.0, n + 1), ids=np.arange(n))
    effect = np.zeros((1, n))
    effect[0, :10] = 1.0
    requests = _request({i: 1.0 for i in range(5)}, np.arange(n), effect, penalty=5000.0)
    t0 = time.perf_counter()
    sharing = share("economic", bids, requests, _merit_order(100.0), _ter(0.0), 100.0, VOLL)
    assert time.perf_counter() - t0 < 10.0
    assert sharing.ok
    rows = sharing.priority_rows.set_index("bid_id")
    assert rows.dso_mw.sum() == pytest.approx(5.0)
    assert set(rows.index[rows.dso_mw > 0]) <= set(range(10))
    used = sharing.dispatch.groupby("bid_id").mw.sum()
    assert used.sum() == pytest.approx(105.0)
    assert set(used.index) == set(range(105))
    assert sharing.dso_shortfall_mw == pytest.approx(0.0, abs=1e-9)


def test_a_device_used_one_way_is_not_offered_the_other_way():
    """A battery charged for its DSO cannot discharge for the TSO in the same period: its
    other bid (id ^ 1, the other direction) is withheld; unrelated ids are not."""
    bids = pd.DataFrame(
        {"bid_id": [10, 11, 12, 20], "direction": ["up", "down", "up", "up"], "mw": 2.0}
    )
    used = pd.DataFrame({"bid_id": [11, 21], "mw": [0.5, 1.0]})
    assert left_after(bids, used).mw.tolist() == [0.0, 1.5, 2.0, 2.0]
