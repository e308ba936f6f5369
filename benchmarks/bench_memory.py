"""Peak memory of a run against its length: a 10-day run within 20 % of a 2-day run.

Each run is a real ``market-sim run`` subprocess (one model, the quickstart, written chunk by
chunk to a temporary folder); its peak resident memory is the child's ``ru_maxrss`` as
``os.wait4`` reports it. Run with ``.venv/bin/python benchmarks/bench_memory.py
[--model dso_managed] [--days 2 10]``; the figures go to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_mb(model: str, days: int, config: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall time (s) of one run of ``days`` days."""
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "market_sim.cli", "run", str(config), "--model", model]
        argv += ["--days", str(days), "--out", out, "--no-progress"]
        started = time.perf_counter()
        # cwd: the folder out of any checkout, so that PYTHONPATH alone says which code runs
        # (``python -m`` puts the working directory first on sys.path)
        child = subprocess.Popen(
            argv, cwd=out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {status}")
    return usage.ru_maxrss / 1024, wall  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dso_managed")
    parser.add_argument("--days", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    args = parser.parse_args()
    figures = {days: peak_mb(args.model, days, args.config) for days in args.days}
    for days, (mb, wall) in figures.items():
        print(f"{args.model}, {days:3d} days: peak RSS {mb:7.1f} MB, wall {wall:6.1f} s")
    first, last = figures[args.days[0]][0], figures[args.days[-1]][0]
    print(f"peak RSS {args.days[-1]} days / {args.days[0]} days: {last / first:.3f}")


if __name__ == "__main__":
    main()
