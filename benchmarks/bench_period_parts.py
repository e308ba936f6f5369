"""Where a period's time goes, timed around named calls in a real run.

A sampling profiler's line attribution misleads at this grain (py-spy gave a 3 x 28 table's
construction 0.5 ms a period; timed around the call in the run it costs 47 us), and replaying
calls hot (``bench_engine_floor.py``) hides the cache misses of a run. This benchmark runs the
quickstart for ``--periods`` periods from ``--start`` (after a warm day, with the runner's
garbage-collector settings) with each named callable wrapped by a timer, and prints each one's
milliseconds and calls a period beside the run's own mean period (``timings``, role ``run``).
A part is inclusive: a part called inside another is counted in both.

Run with::

    .venv/bin/python benchmarks/bench_period_parts.py [--model tso_managed] [--start 2016-12-01]
        [--periods 192] [--part module:Qualified.name ...]

The figures go to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

from market_sim.config import load_config
from market_sim.model import MarketModel
from market_sim.runner import _LOOP_GC_THRESHOLD
from market_sim.scenario import load_scenario

try:
    from benchmarks.timing import replace_in_modules
except ImportError:  # run as a script from benchmarks/
    from timing import replace_in_modules

ROOT = Path(__file__).resolve().parents[1]
#: The parts of a tso_managed period that the twentieth round's table lists.
TSO_MANAGED_PARTS = (
    "market_sim.markets.tso_markets:TsoMarkets.clear",
    "market_sim.markets.central:DistributionModel.validated",
    "market_sim.markets.central:_Integrated.check",
    "market_sim.markets.central:DistributionModel.at",
    "market_sim.markets.central:block_rows",
    "market_sim.model:MarketModel._record",
    "market_sim.kpis:period_kpis",
    "market_sim.recording:record_balancing",
    "market_sim.agents.dso:DSO.operational_data",
    "market_sim.messages:payload_bytes",
    "market_sim.columns:new_frame",
)


def _wrap(spec: str, seconds: Counter, calls: Counter) -> None:
    """Time every call of ``module:Qualified.name``: a method on its class, a function in
    every market_sim module that imported it by name."""
    module_name, qualname = spec.split(":")
    *path, name = qualname.split(".")
    owner = importlib.import_module(module_name)
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[spec] += time.perf_counter() - t0
            calls[spec] += 1

    if path:  # a method: its class is the one place it is looked up
        setattr(owner, name, timed)
    else:
        replace_in_modules(name, original, timed)


def run(model: str, start: str, periods: int, parts: list[str]) -> None:
    config = load_config(ROOT / "configs/quickstart.yaml")
    a_day = 24 * 60 // config.period_minutes
    days = -(-periods // a_day) + 1  # the warm day, then the measured periods
    config = config.model_copy(
        update={"start": date.fromisoformat(start) - timedelta(days=1), "days": days}
    ).for_model(model)
    scenario = load_scenario(config)
    sim = MarketModel(config, scenario.networks, scenario.transmission)
    sim.run(a_day)  # the warm day: the caches and solver models a run has by then
    sim.take_tables()
    gc.collect()
    gc.freeze()
    gc.set_threshold(_LOOP_GC_THRESHOLD, *gc.get_threshold()[1:])
    seconds: Counter = Counter()
    calls: Counter = Counter()
    for spec in parts:
        _wrap(spec, seconds, calls)
    sim.run(periods)
    timings = sim.tables()["timings"]
    whole = timings[(timings.role == "run") & (timings.stage == "period")].seconds
    print(f"{model} from {start}, {periods} periods: mean period {whole.mean() * 1e3:.2f} ms")
    for spec in parts:
        per = seconds[spec] / periods * 1e3
        print(f"{per:7.3f} ms {calls[spec] / periods:6.1f} calls a period  {spec}")
    never = [spec for spec in parts if not calls[spec]]
    if never:  # a renamed or moved callable, or a part this model does not have
        sys.exit(f"bench_period_parts: never called: {', '.join(never)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tso_managed")
    parser.add_argument("--start", default="2016-12-01")
    parser.add_argument("--periods", type=int, default=192)
    parser.add_argument("--part", action="append", help="module:Qualified.name (repeatable)")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    run(args.model, args.start, args.periods, args.part or list(TSO_MANAGED_PARTS))


if __name__ == "__main__":
    main()
