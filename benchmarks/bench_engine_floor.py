"""How much Python a kernel call needs around it: the floor under the engine's share.

Issue 10 asks for an engine share of at most 25 % of a period: everything but the AC power
flows, the LP solves and the bid computation. This benchmark records one quickstart hour of
``tso_managed`` (after a warm day) and replays its calls with hot caches, each timed three
ways: the whole call as the engine makes it, the step below it, and the kernel alone:

* AC power flows: ``run_power_flow_detailed`` (model lookup by taps, result arrays),
  ``lightsim_model.run`` (set-points sent, Newton-Raphson, flows read) and lightsim2grid's
  ``ac_pf`` alone, from the same start;
* LPs of the TSO's validation (``linear_opf.solve_lp``): the whole call (model passed, solved,
  solution read) and the HiGHS run alone of the same passed model;
* the power-flow Jacobian's LU factorisations behind the validation's sensitivities
  (``jacobian.factorised_jacobian``: its numbers, then the LU on the network's plan,
  ``adjoint.StaticLU.factorise``, in numba): numerical work, but none of the kernels the
  issue leaves out of the engine, so all of it counts as engine.

It prints the medians in microseconds, the Python around each kernel call, and what that
Python alone costs a period at the recorded calls per period, against the 25 % budget. Run
with ``.venv/bin/python benchmarks/bench_engine_floor.py``; the figures go to
benchmarks/README.md.
"""

from __future__ import annotations

import inspect
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from market_sim.config import load_config
from market_sim.grid import jacobian, lightsim_model, linear_opf, powerflow
from market_sim.model import MarketModel
from market_sim.scenario import load_scenario

try:
    from benchmarks.timing import replace_in_modules
except ImportError:  # run as a script from benchmarks/
    from timing import replace_in_modules

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 5
PERIODS = 4


def _recording(module_attr: tuple[object, str], calls: list) -> Callable[[], None]:
    """Record the arguments (defaults filled in) of every call of ``module.attr`` made through
    any market_sim module; returns the function that puts the original back."""
    owner, name = module_attr
    original = getattr(owner, name)
    signature = inspect.signature(original)

    def recorded(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(tuple(bound.arguments.values()))
        return original(*args, **kwargs)

    return replace_in_modules(name, original, recorded)


def _median_us(times: list[float]) -> float:
    return statistics.median(times) * 1e6


def _power_flows(calls: list) -> dict[str, float]:
    whole, wrapped, kernel = [], [], []
    for _ in range(ROUNDS):
        for dn, injections, limits, _write, warm in calls:
            t0 = time.perf_counter()
            powerflow.run_power_flow_detailed(dn, injections, limits, False, warm)
            whole.append(time.perf_counter() - t0)
            model = lightsim_model.model_for(dn, powerflow.tap_positions(dn, injections))
            start = powerflow._start(model, warm)
            start = model.v0 if start is None else start
            t0 = time.perf_counter()
            lightsim_model.run(model, injections, start)
            wrapped.append(time.perf_counter() - t0)
            v = start.copy()
            t0 = time.perf_counter()
            model.grid.ac_pf(v, lightsim_model.NR_MAX_IT, lightsim_model.NR_TOL)
            kernel.append(time.perf_counter() - t0)
    return {"whole": _median_us(whole), "run": _median_us(wrapped), "kernel": _median_us(kernel)}


def _lps(calls: list) -> dict[str, float]:
    whole, kernel = [], []
    for _ in range(ROUNDS):
        for h, a, rhs, offered, fairness in calls:
            t0 = time.perf_counter()
            linear_opf.solve_lp(h, a, rhs, offered, fairness)
            whole.append(time.perf_counter() - t0)
            linear_opf._pass_lp(h, a, rhs, offered, fairness == "equitable" and len(offered) > 0)
            t0 = time.perf_counter()
            h.run()
            kernel.append(time.perf_counter() - t0)
    return {"whole": _median_us(whole), "kernel": _median_us(kernel)}


def _factorisations(calls: list) -> dict[str, float]:
    whole, kernel = [], []
    for _ in range(ROUNDS):
        for model, v in calls:
            t0 = time.perf_counter()
            jacobian.factorised_jacobian(model, v)
            whole.append(time.perf_counter() - t0)
            pat = model.jac_pattern
            t0 = time.perf_counter()
            pat.plan.factorise(pat.matrix)
            kernel.append(time.perf_counter() - t0)
    return {"whole": _median_us(whole), "kernel": _median_us(kernel)}


def main() -> None:
    logging.disable(logging.WARNING)
    config = load_config(ROOT / "configs/quickstart.yaml").model_copy(update={"days": 2})
    config = config.for_model("tso_managed")
    scenario = load_scenario(config)
    sim = MarketModel(config, scenario.networks, scenario.transmission)
    sim.run(96)
    sim.take_tables()
    flows, lps, lus = [], [], []
    restores = [
        _recording((powerflow, "run_power_flow_detailed"), flows),
        _recording((linear_opf, "solve_lp"), lps),
        _recording((jacobian, "factorised_jacobian"), lus),
    ]
    sim.run(PERIODS)
    for restore in restores:
        restore()
    timings = sim.tables()["timings"]
    run = timings[timings.role == "run"].groupby("stage").seconds.sum() / PERIODS * 1e3
    bids = timings[timings.stage == "bids"].seconds.sum() / PERIODS * 1e3
    kernels_ms = run["power_flows"] + run["solves"] + bids
    pf, lp, lu = _power_flows(flows), _lps(lps), _factorisations(lus)
    pf_per_period, lp_per_period = len(flows) / PERIODS, len(lps) / PERIODS
    lu_per_period = len(lus) / PERIODS
    print(
        f"{PERIODS} periods: {pf_per_period:.1f} power flows, {lp_per_period:.1f} LPs, "
        f"{lu_per_period:.1f} factorisations a period"
    )
    print("AC power flow, median us: whole {whole:.0f}, lightsim_model.run {run:.0f}, "
          "ac_pf {kernel:.0f}".format(**pf))  # fmt: skip
    print("LP (solve_lp), median us: whole {whole:.0f}, HiGHS run {kernel:.0f}".format(**lp))
    around = (pf["whole"] - pf["kernel"]) * pf_per_period
    around += (lp["whole"] - lp["kernel"]) * lp_per_period
    print("Jacobian factorisation, median us: whole {whole:.0f}, "
          "LU on the plan {kernel:.0f}".format(**lu))  # fmt: skip
    factorising = lu["whole"] * lu_per_period
    print(f"Python around these kernel calls alone: {around / 1e3:.2f} ms a period")
    print(f"factorisations (engine by the issue's definition): {factorising / 1e3:.2f} ms a period")
    print(
        f"recorded periods: {run['period']:.2f} ms, kernels {kernels_ms:.2f} ms (engine share "
        f"{1 - kernels_ms / run['period']:.1%}); a 25 % share allows {kernels_ms / 3:.2f} ms "
        "of engine a period"
    )


if __name__ == "__main__":
    main()
