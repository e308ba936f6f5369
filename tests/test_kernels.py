"""The kernel timer: a period's time in power flows and solves, beside its whole wall time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import highspy

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


def test_every_solve_of_a_period_runs_highs_on_one_thread(make_model, monkeypatch):
    """HiGHS's default ``threads`` (0) sizes its scheduler by the machine, reading the CPU
    topology at every run; every instance of the engine is set to one thread instead."""
    threads = []
    run = highspy.Highs.run

    def counted(self, *args):
        threads.append(self.getOptionValue("threads")[1])
        return run(self, *args)

    monkeypatch.setattr(highspy.Highs, "run", counted)
    for model in ("tso_managed", "dso_managed"):
        sim = make_model(model)
        sim.period = 48
        sim.step()
    assert len(threads) >= 4  # schedules, balancing markets, validation LPs
    assert set(threads) == {kernels.one_thread_highs().getOptionValue("threads")[1]} == {1}


def test_a_scheduler_of_another_size_is_used_as_it_is():
    """HiGHS refuses to solve with a ``threads`` other than its running scheduler's (one per
    process): after a notebook's own solve on two threads, the engine's instances take the
    scheduler as it is and still solve."""
    script = textwrap.dedent(
        """
        import highspy
        theirs = highspy.Highs()
        theirs.setOptionValue("output_flag", False)
        theirs.setOptionValue("threads", 2)
        theirs.addVar(0.0, 1.0)
        assert theirs.run() == highspy.HighsStatus.kOk
        from market_sim import kernels
        ours = kernels.one_thread_highs()
        ours.addVar(0.0, 2.0)
        ours.changeColCost(0, -1.0)
        assert ours.run() == highspy.HighsStatus.kOk
        assert ours.getModelStatus() == highspy.HighsModelStatus.kOptimal
        assert ours.getSolution().col_value[0] == 2.0
        print(ours.getOptionValue("threads")[1])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "0"
