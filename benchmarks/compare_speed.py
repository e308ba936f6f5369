"""The quickstart's speed before and after a change, measured in the same session.

Runs ``benchmarks/bench_quickstart.py --repeat 1`` of a base git revision (in a worktree,
:mod:`revisions`) and of the working tree alternately, ``--rounds`` times each, so that the
machine's noise hits both alike, and reports the medians and their ratio::

    .venv/bin/python benchmarks/compare_speed.py --base 4e4a554 --rounds 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

try:
    from benchmarks.revisions import ROOT, checkout, run_python
except ImportError:  # run as a script from benchmarks/
    from revisions import ROOT, checkout, run_python

WALL = re.compile(r"median ([0-9.]+) s")


def wall_time_s(code: Path) -> float:
    """Seconds the three quickstart models take with the code at ``code``."""
    done = run_python(
        code,
        ["benchmarks/bench_quickstart.py", "--repeat", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    return float(WALL.search(done.stdout).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = checkout(args.base, Path(tempfile.mkdtemp(prefix="compare_speed_")) / "base")
    before, after = [], []
    for _ in range(args.rounds):
        before.append(wall_time_s(base))
        after.append(wall_time_s(ROOT))
    b, a = statistics.median(before), statistics.median(after)
    print(f"quickstart, three models: before {b:.1f} s, after {a:.1f} s (medians of "
          f"{args.rounds}, alternating); after/before = {a / b:.2f}")  # fmt: skip
    print(f"  before: {', '.join(f'{t:.1f}' for t in before)}")
    print(f"  after:  {', '.join(f'{t:.1f}' for t in after)}")


if __name__ == "__main__":
    main()
