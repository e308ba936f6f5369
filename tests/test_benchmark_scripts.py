"""The benchmark scripts still run: they reach into the markets' internals (slots, rated
branches) to build their direct-HiGHS baselines, and an engine change that moves those breaks
``make bench`` long after the change is merged. Each runs here on its smallest inputs."""

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
