"""Prosumer devices over a multi-period run: batteries and flexible loads stay within their
limits, never bid what they cannot deliver, and their energy balances close."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

PERIODS = 96
START = 30


@pytest.fixture(scope="module")
def run(make_model, quickstart):
    settlement = quickstart.settlement.model_copy(update={"delivery_reliability": 0.9})
    # a larger balancing need, so that batteries and loads are dispatched often
    error = quickstart.forecast_error.model_copy(update={"sd_fraction": 0.03})
    sim = make_model("dso_managed", settlement=settlement, forecast_error=error)
    initial = sim.population.device_state(sim.state.energy)
    sim.period = START
    sim.run(periods=PERIODS)
    return sim, initial, sim.tables()


def _delivered(tables, element):
    d = tables["dispatch"].query("resource == 'der'")
    d = d.merge(
        tables["bids"][["period", "bid_id", "element", "element_index"]],
        left_on=["period", "id"],
        right_on=["period", "bid_id"],
    )
    d = d[d.element == element]
    sign = np.where(d.direction == "up", 1.0, -1.0)
    return d.assign(signed_mw=sign * d.delivered_mw)


def test_energy_states_stay_within_bounds(run):
    _, _, t = run
    dev = t["devices"]
    assert dev.period.nunique() == PERIODS
    assert (dev.energy_mwh >= dev.min_mwh - 1e-9).all()
    assert (dev.energy_mwh <= dev.max_mwh + 1e-9).all()


def test_battery_energy_balance_closes(run):
    sim, initial, t = run
    eta, h = sim.population.efficiency, sim.period_h
    flows = _delivered(t, "storage")
    assert len(flows) > 0, "no battery was dispatched: the test would prove nothing"
    key = ["dso", "element_index"]
    charge_in = flows[flows.signed_mw < 0].groupby(key).delivered_mw.sum() * h
    discharge_out = flows[flows.signed_mw > 0].groupby(key).delivered_mw.sum() * h
    end = t["devices"].query("period == @t['devices'].period.max() and element == 'storage'")
    start = initial[initial.element == "storage"]
    soc = end.set_index(key).energy_mwh - start.set_index(key).energy_mwh
    charge_in = charge_in.reindex(soc.index, fill_value=0.0)
    discharge_out = discharge_out.reindex(soc.index, fill_value=0.0)
    losses = charge_in * (1 - eta) + discharge_out * (1 / eta - 1)
    assert (losses >= 0).all() and losses.sum() > 0
    np.testing.assert_allclose(charge_in - discharge_out - losses, soc, atol=1e-7)
    assert eta**2 == pytest.approx(sim.config.prosumers.storage_round_trip_efficiency)


def test_batteries_never_bid_beyond_their_state_of_charge(run):
    sim, initial, t = run
    eta, h = sim.population.efficiency, sim.period_h
    states = pd.concat([initial.assign(period=START - 1), t["devices"]])
    states = states[states.element == "storage"].assign(period=lambda x: x.period + 1)
    bids = t["bids"][t["bids"].element == "storage"].merge(
        states, on=["period", "dso", "element", "element_index"]
    )
    up, down = bids[bids.direction == "up"], bids[bids.direction == "down"]
    assert len(up) and len(down)
    assert (up.mw * h / eta <= up.energy_mwh + 1e-9).all()
    assert (down.mw * h * eta <= down.max_mwh - down.energy_mwh + 1e-9).all()


def test_load_shift_balance_closes(run):
    sim, initial, t = run
    flows = _delivered(t, "load")
    assert len(flows) > 0
    shifted = flows.groupby(["dso", "element_index"]).signed_mw.sum() * sim.period_h
    end = t["devices"].query("period == @t['devices'].period.max() and element == 'load'")
    end = end.set_index(["dso", "element_index"]).energy_mwh
    np.testing.assert_allclose(shifted.reindex(end.index, fill_value=0.0), end, atol=1e-9)
