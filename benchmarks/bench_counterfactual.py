"""The cost of the neutral counterfactual (issue 9): its share of a run, from the timings table.

The quickstart with conflict-of-interest parameters on one DSO (semiurb: a 0.8 loading limit
share, a 0.005 pu voltage margin, wear weight 2 MW), one day under hybrid and dso_managed
(tso_managed has no DSO validation, hence no counterfactual). Every period the conflicted DSO
validates its bids again with the physical limits and the TSO solves two what-if clearings;
both are timed under the stage ``counterfactual``. Run with
`.venv/bin/python benchmarks/bench_counterfactual.py [--days N]`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from market_sim.config import load_config, parse_config
from market_sim.logs import quiet_third_party
from market_sim.markets.transmission import load_case
from market_sim.model import MarketModel
from market_sim.scenario import load_networks

ROOT = Path(__file__).resolve().parents[1]
CONFLICT = {"loading_limit_share": 0.8, "voltage_margin_pu": 0.005, "wear_weight": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=1)
    args = parser.parse_args()
    quiet_third_party()
    quickstart = load_config(ROOT / "configs" / "quickstart.yaml")
    networks = load_networks(quickstart)
    transmission = load_case(quickstart.transmission.case, quickstart.transmission.costs)
    print(
        "| model | run (s) | counterfactual (s) | share | per period (ms) | of it: DSO / TSO (s) "
        "| semiurb's own validation (s) | withheld (MWh) | TSO cost of it (EUR) "
        "| aging avoided (min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in ("hybrid", "dso_managed"):
        data = quickstart.for_model(model, args.days).model_dump()
        data["dsos"][1]["conflict_of_interest"] = CONFLICT
        sim = MarketModel(parse_config(data), networks, transmission)
        t0 = time.perf_counter()
        sim.run()
        total = time.perf_counter() - t0
        tables = sim.tables()
        timings = tables["timings"]
        counterfactual = timings[timings.stage == "counterfactual"]
        cf = counterfactual.seconds.sum()
        tso = counterfactual[counterfactual.role == "tso"].seconds.sum()
        own = timings[(timings.role == "semiurb") & (timings.stage == "validation")].seconds.sum()
        withheld = tables["counterfactual"].withheld_mwh.sum()
        cost = tables["counterfactual"].withheld_tso_cost_eur.sum()
        aging = tables["counterfactual"].aging_avoided_h.sum() * 60
        print(
            f"| {model} | {total:.1f} | {cf:.1f} | {cf / total:.1%} | "
            f"{cf / sim.period * 1e3:.0f} | {cf - tso:.1f} / {tso:.1f} | {own:.1f} | "
            f"{withheld:.1f} | {cost:,.0f} | {aging:.3f} |"
        )


if __name__ == "__main__":
    main()
