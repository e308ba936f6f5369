"""The run summary never hides a power flow that did not converge behind zero violations."""

from __future__ import annotations

from market_sim.kpis import summary


def test_nonconverged_power_flows_are_in_the_summary(make_model):
    sim = make_model("hybrid")
    sim.period = 48
    sim.run(periods=2)
    tables = sim.tables()
    kpis = tables["kpis"]
    # one network's delivery power flow did not converge in the second period
    row = (kpis.period == 49) & (kpis.name == "nonconverged_power_flows")
    kpis.loc[row, "value"] = 1.0
    result = summary({**tables, "kpis": kpis}, sim.period_h)
    assert result["non-converged power flows"] == 1.0
    assert list(result).index("non-converged power flows") == (
        list(result).index("periods with violations") + 1
    )
