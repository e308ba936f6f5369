"""The DSO's local market: it buys relief for its predicted violations at least cost, and the
AC power flow after the purchase is within its limits."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from market_sim.grid.constraints import BidLayout, violations
from market_sim.grid.network import load_network, profile_step
from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.markets.local_market import clear_local_market, statutory_caps
from market_sim.types import BID_COLUMNS, Limits

LIMITS = Limits(0.95, 1.05, 100.0)


@pytest.fixture(scope="module")
def rural():
    """Midsummer noon on the rural feeder with more PV: over-voltage at its remote ends."""
    dn = load_network("1-MV-rural--2-sw", pv_scale=1.6)
    return dn, dn.baseline(profile_step(dt.date(2016, 6, 21), 48, 15))


def _bids(dn, rows):
    """rows: (element, element_index, direction, mw, price)."""
    table = pd.DataFrame(
        rows, columns=["element", "element_index", "direction", "mw", "price_eur_per_mwh"]
    )
    table["bus"] = [
        int(dn.net[e].bus.loc[i]) for e, i in zip(table.element, table.element_index, strict=True)
    ]
    table = table.assign(bid_id=np.arange(len(table)), prosumer=0, aggregator="a", dso="rural")
    return table[list(BID_COLUMNS)].astype(BID_COLUMNS)


def test_predicted_violations_are_bought_away_at_least_cost(rural):
    dn, base = rural
    point = run_power_flow_detailed(dn, base, LIMITS, write=False)
    hot = {v.pos for v in violations(dn, point, statutory_caps(dn, LIMITS))}
    assert hot, "the case must start with violations"
    pv = dn.net.sgen[dn.pv_mask]
    hot_pv = pv[pv.bus.isin(dn.net.bus.index[list(hot)])]
    cold_pv = pv[~pv.bus.isin(dn.net.bus.index[list(hot)])]
    battery = dn.net.storage[dn.net.storage.bus.isin(hot_pv.bus)].index[0]
    rows = [("storage", int(battery), "up", 0.2, 0.5)]  # cheapest, but raises voltage further
    rows += [("sgen", int(cold_pv.index[0]), "down", 0.05, 1.0)]  # cheap, far from the problem
    rows += [
        ("sgen", int(i), "down", float(base.p_mw["sgen"][dn.net.sgen.index.get_loc(i)]), 20.0 + k)
        for k, i in enumerate(hot_pv.index)
    ]
    bids = _bids(dn, rows)

    result = clear_local_market(dn, base, bids, LIMITS, penalty_eur_per_h=1000.0)

    assert result.violations_before and not result.violations_after
    bought = result.bought.set_index("bid_id").mw
    assert 0 not in bought.index, "an up bid only worsens over-voltage: never bought"
    assert (bought <= bids.set_index("bid_id").mw.reindex(bought.index) + 1e-9).all()
    # the purchase, activated, is within limits in an AC power flow
    x = bids.bid_id.map(bought).fillna(0.0).to_numpy()
    after = run_power_flow_detailed(
        dn, BidLayout.of(dn, bids).injections(base, x), LIMITS, write=False
    )
    assert after.result.converged and not violations(dn, after, statutory_caps(dn, LIMITS))
    # least cost: never more than buying the hot-feeder bids in plain price order until safe
    assert result.cost_eur_per_h <= float(bids.price_eur_per_mwh @ bids.mw)


def test_nothing_is_bought_without_a_violation(rural):
    dn, _ = rural
    night = dn.baseline(profile_step(dt.date(2016, 6, 21), 8, 15))
    loose = Limits(0.9, 1.1, 100.0)
    bids = _bids(dn, [("load", 0, "up", 0.1, 1.0), ("load", 1, "down", 0.1, -5.0)])
    result = clear_local_market(dn, night, bids, loose, penalty_eur_per_h=1000.0)
    assert result.bought.empty and result.needs is None and result.cost_eur_per_h == 0.0


def test_a_failed_purchase_lp_is_reported_not_raised(rural, monkeypatch):
    """The DSO stops buying and says why; the coordination model records it as an event."""
    from market_sim.markets import local_market
    from market_sim.markets.priority import Use

    dn, base = rural
    pv = dn.net.sgen[dn.pv_mask]
    bids = _bids(dn, [("sgen", int(i), "down", 0.1, 5.0) for i in pv.index[:3]])
    failed = Use({"dso": np.zeros(len(bids))}, ok=False, message="LP failed: scripted")
    monkeypatch.setattr(local_market, "least_cost_use", lambda der, sides: failed)
    result = clear_local_market(dn, base, bids, LIMITS, penalty_eur_per_h=1000.0)
    assert result.bought.empty and result.message == "LP failed: scripted"
    assert result.violations_before and result.violations_after == result.violations_before
