"""Time per period of each DSO validation method, against a naive one-bid-at-a-time runpp loop.

Networks: ``1-MV-semiurb--2-sw`` (122 buses, PV x2, 5 periods) and ``1-MVLV-urban-all-2-sw``
(10,458 buses, PV x2, 3 periods; the first load builds the net and its profiles, under a
minute, cached afterwards; limits in :data:`NETWORKS`). Bids are built from every load, PV sgen
and storage with a seeded random flexible share: 30 % of the devices offer up and down, each
a uniform 20-100 % of its current power (storage: of its rated power), times 3 for loads and storage
(``BID_SCALE``). Periods are midday steps in spring and summer, where PV makes the unchecked
activation violate voltage limits.

Naive baseline (what a DSO without sensitivities would do): write the set-points into the net
and call ``pandapower.runpp`` once per bid, keeping the bid if the network stays within limits
(greedy, in bid order, per direction). On the 10k-bus network it is timed on the first
``NAIVE_SUBSET`` bids of a period and extrapolated linearly to all bids (stated in the output).

Reports medians over periods and ratios measured in the same run (the machine is noisy).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from market_sim.grid.injections import apply_bids, write_injections
from market_sim.grid.network import DistributionNetwork, load_network
from market_sim.grid.pandapower_reference import runpp_result
from market_sim.grid.powerflow import run_power_flow_detailed
from market_sim.grid.validation import validate
from market_sim.logs import quiet_third_party
from market_sim.types import BID_COLUMNS, DOWN, UP, Injections, Limits

#: (code, PV scale, limits). The MV-LV network's baseline already sits above 1.05 pu at 3,008
#: buses (up to 1.067 pu with unscaled PV), which under a +-5 % band would freeze every one of
#: them at its baseline level; it is validated under the EN 50160 LV band of +-10 % instead.
NETWORKS = (
    ("1-MV-semiurb--2-sw", 2.0, Limits()),
    ("1-MVLV-urban-all-2-sw", 2.0, Limits(vm_min_pu=0.9, vm_max_pu=1.1)),
)
STEPS = tuple(96 * d + 48 for d in (100, 130, 160, 170, 190))
NAIVE_SUBSET = 20
FLEX_SHARE = 0.3
#: Load and storage bids are this multiple of the device's power (aggregated flexibility behind
#: the connection point), so that the unchecked activation violates limits.
BID_SCALE = 3.0


def build_bids(dn: DistributionNetwork, inj: Injections, seed: int) -> pd.DataFrame:
    """Up and down bids of a seeded random 30 % of loads, PV sgens and storages."""
    rng = np.random.default_rng(seed)
    net, rows = dn.net, []
    for table, size in (
        ("load", np.abs(inj.p_mw["load"])),
        ("sgen", np.where(dn.pv_mask, inj.p_mw["sgen"], 0.0)),
        ("storage", dn.storage_p_max_mw),
    ):
        n = len(net[table])
        chosen = np.flatnonzero((rng.random(n) < FLEX_SHARE) & (size > 1e-3))
        for pos in chosen:
            for direction in (UP, DOWN):
                if table == "sgen" and direction == UP:
                    continue  # PV at its maximum cannot inject more
                scale = 1.0 if table == "sgen" else BID_SCALE
                mw = scale * size[pos] * rng.uniform(0.2, 1)
                rows.append((table, net[table].index[pos], direction, mw))
    df = pd.DataFrame(rows, columns=["element", "element_index", "direction", "mw"])
    df["bid_id"] = np.arange(len(df))
    df["prosumer"] = np.arange(len(df))
    df["aggregator"] = "agg"
    df["dso"] = dn.code
    df["bus"] = 0
    df["price_eur_per_mwh"] = 50.0
    return df[list(BID_COLUMNS)].astype(BID_COLUMNS)


def naive(
    dn: DistributionNetwork, inj: Injections, bids: pd.DataFrame, limits: Limits, limit: int | None
):
    """Greedy one-runpp-per-bid validation; returns (seconds, bids checked, validated MW)."""
    t0 = time.perf_counter()
    checked, validated = 0, 0.0
    for direction in (UP, DOWN):
        accepted = bids.iloc[:0]
        for _, bid in bids[bids["direction"] == direction].iterrows():
            if limit is not None and checked >= limit:
                break
            trial = pd.concat([accepted, bid.to_frame().T.astype(BID_COLUMNS)])
            write_injections(dn, apply_bids(dn, inj, trial))
            ok = runpp_result(dn.net, limits, dn.code).within_limits
            checked += 1
            if ok:
                accepted, validated = trial, validated + float(bid["mw"])
    return time.perf_counter() - t0, checked, validated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-only", action="store_true", help="skip the 10k-bus network")
    args = parser.parse_args()
    quiet_third_party()
    for code, pv_scale, limits in NETWORKS[:1] if args.small_only else NETWORKS:
        t0 = time.perf_counter()
        dn = load_network(code, pv_scale=pv_scale)
        print(f"\n{code}: {len(dn.net.bus)} buses, loaded in {time.perf_counter() - t0:.1f} s")
        big = len(dn.net.bus) > 1000
        # warm the power-flow model cache (built once per tap setting)
        run_power_flow_detailed(dn, dn.baseline(STEPS[0]), limits, write=False)
        methods = [("iterative_pf", {}), ("linear_opf", {}), ("linear_opf", {"oltc": True})]
        methods += [("linear_opf", {"fairness": "equitable"})]
        if not big:
            methods.append(("ac_opf", {}))
        times: dict[str, list[float]] = {}
        volumes: dict[str, list[float]] = {}
        rounds: dict[str, list[int]] = {}  # AC power flows per period
        naive_s, naive_mw, n_bids, offered = [], [], [], []
        for k, step in enumerate(STEPS[:3] if big else STEPS):
            inj = dn.baseline(step)
            bids = build_bids(dn, inj, seed=k)
            n_bids.append(len(bids))
            offered.append(float(bids["mw"].sum()))
            for method, opts in methods:
                label = method + "".join(f" {k}={v}" for k, v in opts.items())
                t = time.perf_counter()
                res = validate(dn, inj, bids, limits, method=method, **opts)
                times.setdefault(label, []).append(time.perf_counter() - t)
                volumes.setdefault(label, []).append(res.validated_mw)
                rounds.setdefault(label, []).append(res.iterations)
            if big:
                sec, checked, mw = naive(dn, inj, bids, limits, NAIVE_SUBSET)
                naive_s.append(sec / checked * len(bids))  # extrapolated to all bids
            else:
                sec, _, mw = naive(dn, inj, bids, limits, None)
                naive_s.append(sec)
            naive_mw.append(mw)
        med_naive = statistics.median(naive_s)
        print(
            f"  bids per period: median {statistics.median(n_bids):.0f}, "
            f"offered {statistics.median(offered):.1f} MW"
        )
        note = f" (extrapolated from {NAIVE_SUBSET} bids)" if big else ""
        vol = "" if big else f", validated {statistics.median(naive_mw):.2f} MW"
        print(f"  naive runpp loop: median {med_naive * 1e3:.0f} ms/period{note}{vol}")
        for label, ts in times.items():
            med = statistics.median(ts)
            print(
                f"  {label:32s} median {med * 1e3:8.1f} ms/period, "
                f"validated {statistics.median(volumes[label]):8.2f} MW, "
                f"{statistics.median(rounds[label]):4.0f} AC power flows, "
                f"{med_naive / med:6.1f}x faster than naive"
            )


if __name__ == "__main__":
    main()
