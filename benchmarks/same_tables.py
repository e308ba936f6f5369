"""Check that a refactoring changed structure, not results: every table bit-identical.

Runs each config under every model twice, once with the code of a base git revision (checked
out into a temporary worktree and put first on ``PYTHONPATH``) and once with the working tree,
then compares every results table except ``timings`` (wall time), ``run.json`` except its
wall time and ``config.yaml``, bit for bit (fields one side has not are not compared)::

    .venv/bin/python benchmarks/same_tables.py --base 4e4a554 configs/quickstart.yaml
    .venv/bin/python benchmarks/same_tables.py --compare BEFORE_DIR AFTER_DIR

Exit status 0 when every table matches, 1 with the differing tables listed otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

try:
    from benchmarks.revisions import ROOT, checkout, run_python
except ImportError:  # run as a script from benchmarks/
    from revisions import ROOT, checkout, run_python

IGNORED_TABLES = {"timings"}
IGNORED_RUN_KEYS = {"wall_time_s", "packages"}


def tables(folder: Path) -> dict[str, Path]:
    """A run folder's tables: parquet datasets (``<table>/part-*.parquet``), or the single
    ``<table>.parquet`` files of run folders written before the runs were chunked."""
    found = {p.stem: p for p in folder.glob("*.parquet")}
    found |= {p.name: p for p in folder.iterdir() if p.is_dir() and any(p.glob("part-*.parquet"))}
    return found


def _fields(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def run(configs: list[str], out: Path, code: Path) -> None:
    """Run every config with the code at ``code`` into ``out``."""
    for config in configs:
        cli = ["-m", "market_sim.cli", "run", str(Path(config).resolve()), "--out", str(out)]
        run_python(code, [*cli, "--no-progress"], stdout=subprocess.DEVNULL)


def differences(before: Path, after: Path) -> list[str]:
    """Tables (and run.json keys) that differ between two results trees."""
    found = []
    runs = sorted(p.parent.relative_to(before) for p in before.rglob("run.json"))
    if not runs:
        return [f"{before}: no run folders"]
    for run_dir in runs:
        a, b = before / run_dir, after / run_dir
        if not (b / "run.json").is_file():
            found.append(f"{run_dir}: missing after")
            continue
        right_tables = tables(b)
        for table, path in sorted(tables(a).items()):
            if table in IGNORED_TABLES:
                continue
            if table not in right_tables:
                found.append(f"{run_dir}/{table}: missing after")
                continue
            left, right = pd.read_parquet(path), pd.read_parquet(right_tables[table])
            if not left.equals(right) or list(left.dtypes) != list(right.dtypes):
                found.append(f"{run_dir}/{table}: {_first_difference(left, right)}")
        info_a, info_b = (json.loads((d / "run.json").read_text()) for d in (a, b))
        # keys one side has not (a base revision older than the field) are not compared
        for key in sorted((set(info_a) & set(info_b)) - IGNORED_RUN_KEYS):
            if info_a[key] != info_b[key]:
                found.append(f"{run_dir}/run.json: {key}")
        config_a, config_b = _fields(a / "config.yaml"), _fields(b / "config.yaml")
        if any(config_a[k] != config_b[k] for k in set(config_a) & set(config_b)):
            found.append(f"{run_dir}/config.yaml")
    return found


def _first_difference(left: pd.DataFrame, right: pd.DataFrame) -> str:
    if left.shape != right.shape or list(left.columns) != list(right.columns):
        return f"shape {left.shape} vs {right.shape}, columns {list(left.columns)}"
    for column in left.columns:
        if not left[column].equals(right[column]) or left[column].dtype != right[column].dtype:
            return f"column {column}"
    return "dtypes"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="*", help="scenario YAML files")
    parser.add_argument("--base", help="git revision whose results are the reference")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--keep", type=Path, help="keep both results trees under this folder")
    args = parser.parse_args()
    if args.compare:
        found = differences(*args.compare)
    else:
        work = args.keep or Path(tempfile.mkdtemp(prefix="same_tables_"))
        base = checkout(args.base, work / "base_code")
        run(args.configs, work / "before", base)
        run(args.configs, work / "after", ROOT)
        found = differences(work / "before", work / "after")
    for line in found:
        print(line)
    print("identical" if not found else f"{len(found)} differences")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
