"""The kernel timer: a period's time in power flows and solves, beside its whole wall time."""

from __future__ import annotations

import time

from market_sim import kernels


def test_totals_add_up_and_start_again_after_take():
    kernels.take()
    with kernels.timed("power_flows"):
        time.sleep(0.01)
    with kernels.timed("power_flows"):
        time.sleep(0.01)
    spent = kernels.take()
    assert 0.02 <= spent["power_flows"] < 0.5
    assert spent["solves"] == 0.0
    assert kernels.take() == dict.fromkeys(kernels.KERNELS, 0.0)


def test_a_failing_kernel_still_counts():
    kernels.take()
    try:
        with kernels.timed("solves"):
            time.sleep(0.01)
            raise RuntimeError("solver error")
    except RuntimeError:
        pass
    assert kernels.take()["solves"] >= 0.01


def test_each_period_records_its_wall_time_and_its_kernels(make_model):
    sim = make_model("hybrid")
    sim.period = 48  # midday: bids to validate, a balancing market to clear
    sim.step()
    timings = sim.tables()["timings"]
    run = timings[timings.role == "run"].set_index("stage").seconds
    assert set(run.index) == {"period", *kernels.KERNELS}
    # hybrid validates with AC power flows and clears an LP: both kernels ran, inside the period
    assert run["power_flows"] > 0 and run["solves"] > 0
    assert run["power_flows"] + run["solves"] < run["period"]
    stages = timings[timings.role != "run"].seconds.sum()
    assert stages <= run["period"]
