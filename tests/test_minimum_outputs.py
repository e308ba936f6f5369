"""Minimum outputs the network cannot absorb: the schedule runs units below them, at VOLL
(issue 8, item 8: SimBench EHV's minimum outputs exceed its load on a June night, and every
such period's schedule failed)."""

from __future__ import annotations

import numpy as np
import pytest

from market_sim.markets.schedule import EnergySchedule
from market_sim.markets.transmission import network_from_arrays

VOLL = 3000.0


@pytest.fixture(scope="module")
def two_units():
    """Two buses, one line; a cheap and a dear unit, each with a 50 MW minimum output."""
    return network_from_arrays(
        n_buses=2,
        branches=[(0, 1, 0.1, 1000.0)],
        generators=[("gen 0", 0, 50.0, 200.0, 10.0, 0.0), ("gen 1", 1, 50.0, 200.0, 30.0, 0.0)],
    )


def test_without_a_relief_price_minimum_outputs_are_hard(two_units):
    result = EnergySchedule(two_units).solve(np.array([0.0, 60.0]))
    assert not result.ok
    assert np.isnan(result.below_min_mw)


def test_the_dearer_unit_runs_below_its_minimum_when_load_is_below_both(two_units):
    result = EnergySchedule(two_units, relief_eur_per_mwh=VOLL).solve(np.array([0.0, 60.0]))
    assert result.ok
    assert result.gen_mw.to_numpy() == pytest.approx([50.0, 10.0], abs=1e-6)
    assert result.below_min_mw == pytest.approx(40.0, abs=1e-6)
    # the fuel the units burn, without the relief's price
    assert result.cost_eur_per_h == pytest.approx(50.0 * 10.0 + 10.0 * 30.0, abs=1e-4)
    # one more MW of load spares one MW of relief and burns one of gen 1's
    assert result.price_eur_per_mwh == pytest.approx([30.0 - VOLL] * 2, abs=1e-6)


def test_relief_is_not_used_when_the_minimum_outputs_fit(two_units):
    relieved = EnergySchedule(two_units, relief_eur_per_mwh=VOLL).solve(np.array([0.0, 150.0]))
    hard = EnergySchedule(two_units).solve(np.array([0.0, 150.0]))
    assert relieved.below_min_mw == 0.0
    assert relieved.gen_mw.equals(hard.gen_mw)
    assert relieved.cost_eur_per_h == hard.cost_eur_per_h
    assert np.array_equal(relieved.price_eur_per_mwh, hard.price_eur_per_mwh)


def test_the_pips_fallback_solves_the_same_relaxation(two_units):
    schedule = EnergySchedule(two_units, relief_eur_per_mwh=VOLL)
    highs = schedule.solve(np.array([0.0, 60.0]))
    pips, note = schedule._pips.solve(np.array([0.0, 60.0]))
    assert note == "optimal"
    assert pips.gen_mw - pips.below_min_mw == pytest.approx(highs.gen_mw.to_numpy(), abs=1e-4)
    assert pips.price_eur_per_mwh == pytest.approx(highs.price_eur_per_mwh, abs=1e-3)


def test_the_relief_price_must_be_positive(two_units):
    with pytest.raises(ValueError, match="relief_eur_per_mwh"):
        EnergySchedule(two_units, relief_eur_per_mwh=0.0)


@pytest.fixture(scope="module")
def ehv():
    from market_sim.markets.transmission import load_case

    return load_case("simbench:1-EHV-mixed--0-sw")


def test_simbench_ehv_at_night_runs_units_below_their_minimum(ehv):
    """At 15 % of its load (a June night of configs/ehv.yaml) the plants' minimum outputs
    exceed the load: with a hard minimum HiGHS finds it infeasible, with relief it is solved."""
    load = 0.15 * ehv.base_load_mw
    p_min = ehv.generators.p_min_mw.to_numpy()
    assert p_min[p_min > 0].sum() > load.sum()
    assert not EnergySchedule(ehv).solve(load).ok
    result = EnergySchedule(ehv, relief_eur_per_mwh=VOLL).solve(load)
    assert result.ok and result.message == "optimal"
    output = result.gen_mw.to_numpy()
    assert output.sum() == pytest.approx(load.sum() + ehv.shunt_mw.sum(), abs=1e-3)
    assert result.below_min_mw == pytest.approx(np.clip(p_min - output, 0, None).sum(), abs=1e-3)
    assert result.below_min_mw >= p_min[p_min > 0].sum() - load.sum() - 1e-3
    assert np.isfinite(result.price_eur_per_mwh).all()
    assert result.price_eur_per_mwh.min() >= -VOLL
