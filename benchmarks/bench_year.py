"""A simulated year: wall time, peak memory, and where a period's time goes.

Runs ``market-sim run`` of the quickstart from 2016-01-01 over ``--days`` days (366: the
35,136 15-minute periods of SimBench's year) as a real subprocess, written chunk by chunk to
``--out``, then reads the run's own ``timings`` table: every stage's mean milliseconds per
period, and the engine's share of a period, i.e. everything but the AC power flows, the
LP/QP/MILP solves (role ``run``, :mod:`market_sim.kernels`) and the vectorised bid computation
(stage ``bids``). Peak memory is the child's ``ru_maxrss`` (with ``--jobs``, the largest of its
processes). Run with::

    .venv/bin/python benchmarks/bench_year.py --model tso_managed [--days 366] [--jobs 1]

The figures go to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run_year(models: list[str], days: int, jobs: int, out: Path) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MB) of one ``market-sim run``."""
    argv = [sys.executable, "-m", "market_sim.cli", "run", str(ROOT / "configs/quickstart.yaml")]
    for model in models:
        argv += ["--model", model]
    argv += ["--set", "start=2016-01-01", "--days", str(days), "--jobs", str(jobs)]
    argv += ["--out", str(out), "--no-progress", "--overwrite"]
    started = time.perf_counter()
    # cwd out of any checkout, so that PYTHONPATH alone says which code runs
    child = subprocess.Popen(argv, cwd=out, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {status}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def stage_figures(folder: Path) -> tuple[pd.Series, float, int]:
    """Mean ms per period of every stage (role run: the period and its kernels), the engine's
    share of a period, and the number of periods."""
    timings = pd.read_parquet(folder / "timings", columns=["period", "role", "stage", "seconds"])
    periods = timings.period.nunique()
    run = timings[timings.role == "run"].groupby("stage").seconds.sum()
    stages = timings[timings.role != "run"].groupby("stage").seconds.sum()
    per_period = pd.concat([stages, run.rename(lambda s: f"run: {s}")]) / periods * 1e3
    kernels = run["power_flows"] + run["solves"] + stages.get("bids", 0.0)
    return per_period.sort_values(ascending=False), 1 - kernels / run["period"], periods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="default: tso_managed")
    parser.add_argument("--days", type=int, default=366)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_year"))
    args = parser.parse_args()
    models = args.model or ["tso_managed"]
    args.out.mkdir(parents=True, exist_ok=True)
    wall, peak = run_year(models, args.days, args.jobs, args.out)
    print(f"{', '.join(models)}: {args.days} days, --jobs {args.jobs}: wall {wall:.0f} s "
          f"({wall / 60:.1f} min), peak RSS {peak:.0f} MB")  # fmt: skip
    # the interpreter's build matters: pyenv's default one ran the engine 6-9 % slower than
    # Debian's optimised /usr/bin/python3.11 (benchmarks/README.md, sixteenth round)
    print(f"Python {sys.version.split()[0]} at {sys.executable}")
    for model in models:
        per_period, engine, periods = stage_figures(args.out / "quickstart" / model)
        print(f"\n{model}: {periods} periods, engine share {engine:.1%}")
        print(per_period.round(2).to_string())


if __name__ == "__main__":
    main()
