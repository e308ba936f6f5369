"""``bench_clearing.py`` still runs: its direct-HiGHS baselines reach into the balancing
market's internals (slots, rated branches), and an engine change that moves those broke
``make bench`` long after the change was merged. It runs here on two periods."""

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
