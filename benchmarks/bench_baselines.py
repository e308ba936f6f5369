"""The fast paths against naive baselines, timed in the same run on the quickstart's inputs.

* AC power flow: our cached-model Newton-Raphson (``run_power_flow``) against a plain
  ``pandapower.runpp`` of the same operating points (the delivery power flows of one day).
* Balancing market: the model built once and updated per period against one rebuilt from scratch
  every period, on the offers, needs and flows of one day of the hybrid model.

Reports medians and ratios (the machine is noisy).
"""

from __future__ import annotations

import pandapower as pp

from market_sim.config import load_config
from market_sim.grid.injections import write_injections
from market_sim.grid.powerflow import run_power_flow
from market_sim.logs import quiet_third_party
from market_sim.markets.balancing import BalancingMarket
from market_sim.markets.transmission import load_case
from market_sim.model import MarketModel
from market_sim.scenario import load_networks
from market_sim.types import Limits

try:
    from benchmarks.bench_quickstart import ROOT
    from benchmarks.timing import median_ms
except ImportError:  # run as a script from benchmarks/
    from bench_quickstart import ROOT
    from timing import median_ms


def main() -> None:
    quiet_third_party()
    config = load_config(ROOT / "configs" / "quickstart.yaml")
    networks = load_networks(config)
    transmission = load_case(config.transmission.case)
    sim = MarketModel(config.for_model("hybrid"), networks, transmission)
    inputs, states = [], {name: [] for name in networks}
    cleared, clear = [], sim.tso.clear

    def capture(plan, *rest):
        result = clear(plan, *rest)
        cleared.append((plan, result))
        return result

    sim.tso.clear = capture
    for _ in range(config.n_periods):
        sim.step()
        plan, result = cleared[-1]
        inputs.append((result.offers.copy(), plan.need_mw.copy(), plan.schedule.flow_mw.copy()))
        for name in sim.dsos:
            states[name].append(sim.state.delivered[name])

    print("AC power flow, median ms per power flow over one day of delivered states:")
    for name, dn in networks.items():
        fast = median_ms(lambda inj, dn=dn: run_power_flow(dn, inj, Limits()), states[name])

        def naive(inj, dn=dn):
            write_injections(dn, inj)
            pp.runpp(dn.net)

        slow = median_ms(naive, states[name])
        print(
            f"  {dn.code}: runpp {slow:.1f} ms, fast path {fast:.2f} ms, ratio {slow / fast:.0f}x"
        )

    market = BalancingMarket(transmission, config.voll_eur_per_mwh)
    built_once = median_ms(lambda x: market.clear(*x), inputs)
    rebuilt = median_ms(
        lambda x: BalancingMarket(transmission, config.voll_eur_per_mwh).clear(*x), inputs
    )
    print("balancing market clearing (case39), median ms per period:")
    print(
        f"  rebuilt every period {rebuilt:.1f} ms, built once and updated {built_once:.1f} ms, "
        f"ratio {rebuilt / built_once:.1f}x"
    )


if __name__ == "__main__":
    main()
