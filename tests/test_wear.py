"""The wear stage: transformer aging and line loading hours from a period's power flow, carried
in the run state, recorded in the ``aging`` table and the KPIs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from market_sim.config import AgingConfig, ConfigError, ThermalOverrides, parse_config
from market_sim.delivery import Delivered
from market_sim.grid.aging import ThermalParams, initial_state
from market_sim.kpis import summary, wear_kpis
from market_sim.run_state import RunState
from market_sim.types import Injections
from market_sim.wear import ambient_c, period_wear


def _dso(network, **aging):
    return SimpleNamespace(config=SimpleNamespace(aging=AgingConfig(**aging)), network=network)


def _flow(net, trafo_percent, line_percent=None) -> Delivered:
    lines = np.full(len(net.line), 10.0) if line_percent is None else line_percent
    return Delivered(Injections({}, {}), None, "", None, lines, np.asarray(trafo_percent, float))


@pytest.fixture(scope="module")
def rural(networks):
    return networks["rural"]


def test_rated_loading_ages_at_the_normal_rate(rural):
    """Known answer through the stage: K = 1 at 20 degC from the steady state is the rated hot
    spot 98 degC, where normal paper uses 15 minutes of life in 15 minutes."""
    dso = _dso(rural)
    n = len(rural.net.trafo)
    states, wear = period_wear({"rural": dso}, {"rural": _flow(rural.net, [100.0] * n)}, {}, 12, 15)
    rows = wear["rural"].rows
    assert list(rows.trafo) == list(rural.net.trafo.index)
    np.testing.assert_allclose(rows.hot_spot_c, 98.0, atol=1e-9)
    np.testing.assert_allclose(rows.loss_of_life_h, 0.25, rtol=1e-9)
    np.testing.assert_allclose(rows.aging_rate, 1.0, rtol=1e-9)
    assert wear["rural"].loss_of_life_h == pytest.approx(0.25 * n)
    # upgraded paper at the same hot spot ages slower
    up = _dso(rural, upgraded_paper=True)
    _, upgraded = period_wear({"rural": up}, {"rural": _flow(rural.net, [100.0] * n)}, {}, 12, 15)
    assert upgraded["rural"].loss_of_life_h < 0.3 * wear["rural"].loss_of_life_h
    # and the state is carried: a period of overload from there heats it
    overload = {"rural": _flow(rural.net, [130.0] * n)}
    _, hotter = period_wear({"rural": dso}, overload, states, 12, 15)
    assert (hotter["rural"].rows.hot_spot_c > 98.5).all()


def test_line_hours_above_each_threshold(rural):
    line = np.full(len(rural.net.line), 50.0)
    line[:3] = [85.0, 101.0, np.nan]
    flow = _flow(rural.net, [40.0] * len(rural.net.trafo), line)
    _, wear = period_wear({"rural": _dso(rural)}, {"rural": flow}, {}, 12, 15)
    assert wear["rural"].line_hours_above == (0.5, 0.25)
    dso = _dso(rural, line_thresholds_percent=[40.0, 90.0])
    _, wear = period_wear({"rural": dso}, {"rural": flow}, {}, 12, 60)
    assert wear["rural"].line_hours_above == (len(rural.net.line) - 1.0, 1.0)


def test_unknown_loading_is_left_out_and_the_state_held(rural):
    n = len(rural.net.trafo)
    dso = _dso(rural)
    start = {"rural": initial_state(ThermalParams(), np.full(n, 0.8), 20.0)}
    loading = np.full(n, 80.0)
    loading[0] = np.nan
    states, wear = period_wear({"rural": dso}, {"rural": _flow(rural.net, loading)}, start, 12, 15)
    rows = wear["rural"].rows
    assert rows.iloc[0][["load_factor", "hot_spot_c", "loss_of_life_h"]].isna().all()
    assert np.isfinite(rows.iloc[1:].loss_of_life_h).all()
    assert states["rural"].top_oil_rise_k[0] == start["rural"].top_oil_rise_k[0]
    kpis = wear_kpis(wear, wear)
    assert kpis["trafo_loss_of_life_h"] == pytest.approx(rows.loss_of_life_h.iloc[1:].sum())
    assert kpis["trafo_hot_spot_max_c"] == pytest.approx(rows.hot_spot_c.iloc[1:].max())


def test_daily_ambient():
    cfg = AgingConfig(ambient_c=20.0, ambient_daily_amplitude_k=10.0, ambient_peak_hour=15.0)
    assert ambient_c(cfg, 15.0) == pytest.approx(30.0)
    assert ambient_c(cfg, 3.0) == pytest.approx(10.0)
    assert ambient_c(AgingConfig(), 3.0) == 20.0


def test_thermal_overrides_are_the_params_fields(quickstart):
    assert set(ThermalOverrides.model_fields) == set(ThermalParams.__dataclass_fields__)
    data = quickstart.model_dump(mode="json")
    data["dsos"][0]["aging"] = {"thermal": {"k21": 0.5}}
    with pytest.raises(ConfigError, match=r"dsos\.0\.aging\.thermal\.k21: got 0.5"):
        parse_config(data)


def test_a_run_records_aging_and_carries_it_in_the_state(make_model):
    sim = make_model("hybrid")
    sim.period = 44
    sim.run(periods=2)
    tables = sim.tables()
    aging, kpis = tables["aging"], tables["kpis"]
    trafos = sum(len(n.net.trafo) for n in sim.networks.values())
    assert len(aging) == 2 * trafos and aging.loss_of_life_h.gt(0).all()
    value = kpis.set_index(["period", "name"]).value
    for period, rows in aging.groupby("period"):
        assert value[period, "trafo_loss_of_life_h"] == pytest.approx(rows.loss_of_life_h.sum())
        assert value[period, "trafo_hot_spot_max_c"] == pytest.approx(rows.hot_spot_c.max())
        assert value[period, "baseline_trafo_loss_of_life_h"] > 0
    # the second period started from the state the first left, not from a steady state
    second = aging[aging.period == 45]
    steady = initial_state(ThermalParams(), second.load_factor.to_numpy(), 20.0).top_oil_c()
    assert np.abs(second.top_oil_c.to_numpy() - steady).min() > 0.05
    state = sim.state.thermal
    assert set(state) == set(sim.networks) == set(sim.state.baseline_thermal)
    again = RunState.from_bytes(sim.state.to_bytes())
    for kind in ("thermal", "baseline_thermal"):
        for name, s in getattr(sim.state, kind).items():
            r = getattr(again, kind)[name]
            assert r.ambient_c == s.ambient_c
            for column in ("top_oil_rise_k", "hot_spot_rise_1_k", "hot_spot_rise_2_k"):
                assert np.array_equal(getattr(r, column), getattr(s, column))
    result = summary(tables, sim.period_h)
    life_min = 60 * aging.loss_of_life_h.sum()
    assert result["transformer loss of life (min)"] == pytest.approx(life_min)
    assert result["transformer hot spot, max (degC)"] == pytest.approx(aging.hot_spot_c.max())
