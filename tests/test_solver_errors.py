"""A solver's own failure is a result (not converged, not optimal) that the run records as an
event; any other exception is a bug and propagates (issue 8, item 9: ``except Exception``
turned programming errors into "not converged")."""

from __future__ import annotations

import numpy as np
import pytest
from pandapower.powerflow import LoadflowNotConverged

from market_sim.grid import lightsim_model, pandapower_reference
from market_sim.grid.injections import tap_positions
from market_sim.grid.network import load_network
from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.markets.schedule import EnergySchedule
from market_sim.types import Limits

STEP = 96 * 170 + 48  # a June noon


class Failing:
    """A stand-in for a solver object whose ``method`` raises ``error``; the rest is real."""

    def __init__(self, real, method: str, error: Exception):
        self._real, self._method, self._error = real, method, error

    def __getattr__(self, name):
        if name == self._method:

            def fail(*args, **kwargs):
                raise self._error

            return fail
        return getattr(self._real, name)


@pytest.fixture(scope="module")
def dn():
    return load_network("1-MV-rural--2-sw")


@pytest.fixture
def grid_raising(dn, monkeypatch):
    """Make lightsim2grid's Newton-Raphson of ``dn`` raise the given error."""
    injections = dn.baseline(STEP)
    model = lightsim_model.model_for(dn, tap_positions(dn, injections))

    def install(error: Exception) -> None:
        monkeypatch.setattr(model, "grid", Failing(model.grid, "ac_pf", error))
        model.solutions.clear()  # a kept solution would answer without the grid

    return install


def test_lightsim2grid_failing_is_not_converged_and_the_next_one_solves(
    dn, grid_raising, monkeypatch
):
    injections = dn.baseline(STEP)
    before = run_power_flow_detailed(dn, injections, Limits())
    grid_raising(RuntimeError("lightsim2grid: singular Jacobian"))
    failed = run_power_flow_detailed(dn, injections, Limits())
    assert not failed.result.converged and np.isnan(failed.vm_pu).all()
    monkeypatch.undo()
    after = run_power_flow_detailed(dn, injections, Limits())
    assert before.result.converged and after.result == before.result
    assert np.array_equal(after.vm_pu, before.vm_pu)


@pytest.mark.parametrize("error", [KeyError("bus"), TypeError("bad argument"), ValueError("x")])
def test_a_bug_under_lightsim2grid_propagates(dn, grid_raising, error):
    grid_raising(error)
    with pytest.raises(type(error)):
        run_power_flow_detailed(dn, dn.baseline(STEP), Limits())


def test_runpp_not_converging_is_none_and_a_bug_in_it_propagates(dn, monkeypatch):
    net = dn.net

    def not_converging(*args, **kwargs):
        raise LoadflowNotConverged("Power Flow nr did not converge")

    monkeypatch.setattr(pandapower_reference.pp, "runpp", not_converging)
    assert pandapower_reference.runpp_flows(net) is None

    def buggy(*args, **kwargs):
        raise KeyError("res_bus")

    monkeypatch.setattr(pandapower_reference.pp, "runpp", buggy)
    with pytest.raises(KeyError):
        pandapower_reference.runpp_flows(net)


@pytest.fixture
def schedule(case39):
    return EnergySchedule(case39)


def test_a_bug_under_highs_propagates(schedule, monkeypatch):
    lp = schedule._lp
    monkeypatch.setattr(lp, "highs", Failing(lp.highs, "run", TypeError("bad argument")))
    with pytest.raises(TypeError):
        schedule.solve(schedule.network.base_load_mw)


def test_pips_linear_algebra_failing_is_a_failed_schedule(schedule, monkeypatch):
    """HiGHS fails, then PIPS's linear algebra: a failed schedule with both reasons."""
    from pandapower.pypower import qps_pips

    monkeypatch.setattr(schedule._lp, "run", lambda: "not solved to optimality: Unknown")

    def singular(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(qps_pips, "qps_pips", singular)
    result = schedule.solve(schedule.network.base_load_mw)
    assert not result.ok
    assert "Unknown" in result.message and "LinAlgError" in result.message

    def buggy(*args, **kwargs):
        raise IndexError("index 40 is out of bounds")

    monkeypatch.setattr(qps_pips, "qps_pips", buggy)
    with pytest.raises(IndexError):
        schedule.solve(schedule.network.base_load_mw)


def test_a_solve_ending_unknown_is_solved_again_without_presolve(schedule, monkeypatch):
    """HiGHS's "Unknown" (postsolve of a reduced LP that was not solved) gets a definite
    status from the unreduced LP; presolve is on again afterwards."""
    import highspy

    lp = schedule._lp
    real = lp.highs
    seen = []

    class FirstUnknown(Failing):
        def run(self):
            seen.append(real.getOptionValue("presolve")[1])
            return real.run()

        def getModelStatus(self):  # noqa: N802 - highspy's name
            status = real.getModelStatus()
            return highspy.HighsModelStatus.kUnknown if len(seen) == 1 else status

    monkeypatch.setattr(lp, "highs", FirstUnknown(real, "", RuntimeError()))
    result = schedule.solve(schedule.network.base_load_mw)
    assert result.ok and result.message == "optimal"
    assert seen == ["choose", "off"]
    assert real.getOptionValue("presolve")[1] == "choose"
