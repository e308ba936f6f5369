"""Time the quickstart: three coordination models, one day, split by stage.

Run with `make bench` (or `.venv/bin/python benchmarks/bench_quickstart.py [--repeat N]`). The
machine is noisy: it reports medians over repeats. Networks are loaded once, before timing, as in
a real run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd

from market_sim.config import load_config
from market_sim.logs import quiet_third_party
from market_sim.markets.transmission import load_case
from market_sim.model import MarketModel
from market_sim.scenario import load_networks

ROOT = Path(__file__).resolve().parents[1]
STAGES = {
    "bids": ["bids", "forecast"],
    "validation": ["validation"],
    "clearing": ["schedule", "clearing", "disaggregation"],
    "delivery": ["delivery"],
}


def run_once(config, networks, transmission) -> tuple[float, pd.DataFrame]:
    """Wall time of the three models and the per-period time per stage."""
    rows = []
    start = time.perf_counter()
    for model in config.models:
        t0 = time.perf_counter()
        sim = MarketModel(config.for_model(model), networks, transmission)
        sim.run()
        total = time.perf_counter() - t0
        timings = sim.tables()["timings"]
        per_stage = {k: timings[timings.stage.isin(v)].seconds.sum() for k, v in STAGES.items()}
        per_stage["rest"] = total - sum(per_stage.values())
        rows.append(
            {
                "model": model,
                **{k: v / sim.period * 1e3 for k, v in per_stage.items()},
                "total": total / sim.period * 1e3,
            }
        )
    return time.perf_counter() - start, pd.DataFrame(rows).set_index("model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    args = parser.parse_args()
    quiet_third_party()
    config = load_config(args.config)
    t0 = time.perf_counter()
    networks = load_networks(config)
    transmission = load_case(config.transmission.case, config.transmission.costs)
    print(f"networks loaded once in {time.perf_counter() - t0:.1f} s")
    walls, tables = [], []
    for _ in range(args.repeat):
        wall, table = run_once(config, networks, transmission)
        walls.append(wall)
        tables.append(table)
    median = pd.concat(tables).groupby(level=0, sort=False).median()
    print(
        f"quickstart, {len(config.models)} models x {config.n_periods} periods: "
        f"median {statistics.median(walls):.1f} s over {args.repeat} runs "
        f"(min {min(walls):.1f}, max {max(walls):.1f})"
    )
    print("median ms per period by stage:")
    print(median.round(1).to_string())


if __name__ == "__main__":
    main()
