"""IEC 60076-7 thermal model and aging: known answers of the standard and the step response.

The aging points are those of the standard (clause 6.3); the step responses are checked
against the closed-form solution of the same first-order equations (each term
``x(t) = x∞ + (x0 − x∞) e^(−t/τ)`` for a step of load at constant ambient), which the
difference equations approximate.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from market_sim.grid.aging import (
    ThermalParams,
    aging_rate,
    initial_state,
    loss_of_life_h,
    thermal_period,
    thermal_step,
    with_overrides,
)

#: ONAF medium/large power transformer of the standard's table: k21 = 2, so the hot spot
#: overshoots after a load step (distribution transformers have k21 = 1: no overshoot).
POWER = ThermalParams(
    top_oil_rise_k=52.0,
    hot_spot_gradient_k=26.0,
    loss_ratio=6.0,
    oil_exponent=0.8,
    winding_exponent=1.3,
    k11=0.5,
    k21=2.0,
    k22=2.0,
    oil_time_constant_min=150.0,
    winding_time_constant_min=7.0,
)


def run(params, state, k, ambient, minutes, period=15.0):
    """Periods of ``period`` minutes at load factor ``k``: the hot spot after each."""
    load = np.full(state.top_oil_rise_k.shape, float(k))
    spots = []
    for _ in range(round(minutes / period)):
        state, spot = thermal_step(params, state, load, ambient, period)
        spots.append(spot)
    return state, np.array(spots)


@pytest.mark.parametrize(("hot_spot", "rate"), [(98.0, 1.0), (104.0, 2.0), (110.0, 4.0)])
def test_normal_paper_aging_rate(hot_spot, rate):
    assert aging_rate(np.array([hot_spot]))[0] == pytest.approx(rate, rel=1e-12)


def test_upgraded_paper_aging_rate():
    assert aging_rate(np.array([110.0]), upgraded=True)[0] == pytest.approx(1.0, rel=1e-12)
    # the Arrhenius form: slower than normal paper below 110 °C, by its own law
    at_98 = aging_rate(np.array([98.0]), upgraded=True)[0]
    assert at_98 == pytest.approx(math.exp(15000 / 383 - 15000 / 371), rel=1e-12)
    assert at_98 < 0.3


def test_rated_load_steady_state_is_98_c_and_a_fixed_point():
    params = ThermalParams()
    state = initial_state(params, np.array([1.0, 0.5]), 20.0)
    assert state.hot_spot_c()[0] == pytest.approx(20 + 55 + 23)
    after, spot = thermal_step(params, state, np.array([1.0, 0.5]), 20.0, 15.0)
    np.testing.assert_allclose(spot, state.hot_spot_c(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(after.top_oil_rise_k, state.top_oil_rise_k, rtol=0, atol=1e-12)
    # at V = 1 a quarter hour uses a quarter hour of life
    _, life = loss_of_life_h(params, state, np.array([1.0, 0.5]), 20.0, 15.0)
    assert life[0] == pytest.approx(0.25, rel=1e-9)
    assert 0 < life[1] < 0.25 * aging_rate(np.array([80.0]))[0]


def test_top_oil_reaches_63_percent_of_its_step_at_k11_tau_o():
    for params in (ThermalParams(), POWER):
        start = initial_state(params, np.array([0.0]), 20.0)
        final = initial_state(params, np.array([1.0]), 20.0)
        tau = params.k11 * params.oil_time_constant_min
        state, _ = run(params, start, 1.0, 20.0, tau, period=tau / 12)
        step = final.top_oil_rise_k - start.top_oil_rise_k
        reached = (state.top_oil_rise_k - start.top_oil_rise_k) / step
        assert reached[0] == pytest.approx(1 - math.exp(-1), abs=2e-3)


def test_hot_spot_after_a_long_step_to_rated_load():
    """From no load to K = 1: the hot spot settles at θa + Δθor + Δθhr."""
    for params in (ThermalParams(), POWER):
        start = initial_state(params, np.array([0.0]), 20.0)
        _, spots = run(params, start, 1.0, 20.0, 15 * params.oil_time_constant_min)
        expected = 20.0 + params.top_oil_rise_k + params.hot_spot_gradient_k
        assert spots[-1][0] == pytest.approx(expected, abs=1e-3)


def test_hot_spot_gradient_overshoots_as_the_closed_form_says():
    """k21 = 2: the gradient Δθh1 − Δθh2 rises to about 1.4 Δθhr before it settles at Δθhr."""
    start = initial_state(POWER, np.array([0.0]), 20.0)
    state, minutes, gradients = start, np.arange(1, 241), []
    for _ in minutes:
        state, spot = thermal_step(POWER, state, np.array([1.0]), 20.0, 1.0)
        gradients.append(spot[0] - state.top_oil_c()[0])
    fast = POWER.k22 * POWER.winding_time_constant_min
    slow = POWER.oil_time_constant_min / POWER.k22
    closed = POWER.hot_spot_gradient_k * (
        POWER.k21 * (1 - np.exp(-minutes / fast)) - (POWER.k21 - 1) * (1 - np.exp(-minutes / slow))
    )
    np.testing.assert_allclose(gradients, closed, rtol=0, atol=0.2)
    peak = int(np.argmax(gradients))
    when = math.log(POWER.k21 * slow / ((POWER.k21 - 1) * fast)) / (1 / fast - 1 / slow)
    assert minutes[peak] == pytest.approx(when, abs=1.0)  # 40.8 min
    assert gradients[peak] > 1.4 * POWER.hot_spot_gradient_k
    # the distribution transformer's (k21 = 1) gradient never overshoots
    params = ThermalParams()
    _, spots = run(params, initial_state(params, np.array([0.0]), 20.0), 1.0, 20.0, 60, 1.0)
    assert spots.max() <= 20 + params.top_oil_rise_k + params.hot_spot_gradient_k


def test_sub_steps_do_not_change_the_answer():
    coarse, fine = ThermalParams(), ThermalParams(max_substep_min=0.05)
    load = np.array([0.3, 1.2, 1.5])
    results = []
    for params in (coarse, fine):
        state = initial_state(params, np.array([0.6, 0.6, 0.2]), 20.0)
        life = np.zeros(3)
        for _ in range(8):
            period = thermal_period(params, state, load, 25.0, 15.0)
            state, life = period.state, life + period.loss_of_life_h
        results.append((period.hot_spot_c, life))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=0.05)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=0.01)
    # and the answer does move with the load: the comparison could fail
    assert results[1][0][2] > results[1][0][1] + 5


def test_the_oil_lags_a_change_of_ambient():
    """The rises refer to the ambient the state was left at: a warmer period heats the oil
    with its time constant, it does not jump with the air."""
    params = ThermalParams()
    state = initial_state(params, np.array([1.0]), 20.0)
    after, _ = thermal_step(params, state, np.array([1.0]), 25.0, 15.0)
    warmed = after.top_oil_c()[0] - state.top_oil_c()[0]
    assert warmed == pytest.approx(5 * (1 - math.exp(-15 / 180)), abs=0.01)


def test_overload_ages_faster_and_overrides_apply():
    params = ThermalParams()
    state = initial_state(params, np.array([1.0]), 20.0)
    _, rated = loss_of_life_h(params, state, np.array([1.0]), 20.0, 15.0)
    _, over = loss_of_life_h(params, state, np.array([1.3]), 20.0, 15.0)
    _, upgraded = loss_of_life_h(params, state, np.array([1.0]), 20.0, 15.0, upgraded=True)
    assert over[0] > rated[0] > upgraded[0]
    assert with_overrides({"k21": 2.0, "loss_ratio": None}) == replace(params, k21=2.0)
    with pytest.raises(ValueError, match="k21"):
        ThermalParams(k21=0.5)
    with pytest.raises(ValueError, match="oil_time_constant_min"):
        ThermalParams(oil_time_constant_min=0.0)


def _stepped(params, state, k, ambient, minutes, upgraded):
    """The standard's difference equations, one explicit sub-step after another."""
    n = math.ceil(minutes / params.max_substep_min - 1e-9)
    dt = minutes / n
    oil = state.ambient_c + state.top_oil_rise_k
    h1, h2 = state.hot_spot_rise_1_k, state.hot_spot_rise_2_k
    ultimate = ((1 + k**2 * params.loss_ratio) / (1 + params.loss_ratio)) ** params.oil_exponent
    gradient = params.hot_spot_gradient_k * k**params.winding_exponent
    life = np.zeros_like(k)
    for _ in range(n):
        oil = oil + dt / (params.k11 * params.oil_time_constant_min) * (
            ultimate * params.top_oil_rise_k - (oil - ambient)
        )
        h1 = h1 + dt / (params.k22 * params.winding_time_constant_min) * (
            params.k21 * gradient - h1
        )
        h2 = h2 + dt / (params.oil_time_constant_min / params.k22) * (
            (params.k21 - 1) * gradient - h2
        )
        life = life + aging_rate(oil + h1 - h2, upgraded) * dt / 60
    return oil + h1 - h2, life


@pytest.mark.parametrize("params", [ThermalParams(), POWER])
@pytest.mark.parametrize("upgraded", [False, True])
def test_closed_form_sub_steps_equal_the_stepped_difference_equations(params, upgraded):
    state = initial_state(params, np.array([0.2, 0.9, 1.1]), 15.0)
    k = np.array([1.4, 0.3, 1.1])
    period = thermal_period(params, state, k, 28.0, 15.0, upgraded)
    hot_spot, life = _stepped(params, state, k, 28.0, 15.0, upgraded)
    np.testing.assert_allclose(period.hot_spot_c, hot_spot, rtol=1e-12)
    np.testing.assert_allclose(period.loss_of_life_h, life, rtol=1e-10)
