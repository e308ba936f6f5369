"""The benchmarks that reach into the engine's internals still run: ``bench_clearing.py``'s
direct-HiGHS baselines (slots, rated branches; an engine change that moved those broke
``make bench`` long after the change was merged) and ``bench_period_parts.py``'s named
callables. Each runs here on a period or two."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_clearing_runs_on_two_periods():
    argv = [sys.executable, str(ROOT / "benchmarks/bench_clearing.py"), "--periods", "2"]
    done = subprocess.run(argv + ["--rebuilt-every", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "balancing rebuilt/persistent" in done.stdout


def test_bench_period_parts_times_every_default_part():
    """Its parts are named callables of the engine: a rename must fail here, not leave a part
    silently untimed (the script exits non-zero for a part never called)."""
    argv = [sys.executable, str(ROOT / "benchmarks/bench_period_parts.py"), "--periods", "2"]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "TsoMarkets.clear" in done.stdout and "mean period" in done.stdout


def test_bench_period_parts_reports_a_part_never_called():
    part = "market_sim.markets.local_market:clear_local_market"  # not in tso_managed
    argv = [sys.executable, str(ROOT / "benchmarks/bench_period_parts.py"), "--periods", "1"]
    done = subprocess.run(argv + ["--part", part], capture_output=True, text=True)
    assert done.returncode != 0
    assert "never called" in done.stderr
