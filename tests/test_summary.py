"""The run summary: resource cost first, transfers apart, and never a power flow that did not
converge hidden behind zero violations."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from market_sim.kpis import summary
from market_sim.runner import RunReport, side_by_side


@pytest.fixture(scope="module")
def noon(make_model):
    sim = make_model("hybrid")
    sim.period = 48
    sim.run(periods=2)
    return sim


def test_nonconverged_power_flows_are_in_the_summary(noon):
    tables = noon.tables()
    kpis = tables["kpis"]
    # one network's delivery power flow did not converge in the second period
    row = (kpis.period == 49) & (kpis.name == "nonconverged_power_flows")
    kpis.loc[row, "value"] = 1.0
    result = summary({**tables, "kpis": kpis}, noon.period_h)
    assert result["non-converged power flows"] == 1.0
    assert list(result).index("non-converged power flows") == (
        list(result).index("periods with violations") + 1
    )


def test_resource_cost_heads_the_summary_and_its_parts_add_up(noon):
    result = summary(noon.tables(), noon.period_h)
    assert list(result)[0] == "resource cost (EUR)"
    parts = [v for k, v in result.items() if k.startswith("  ") and k.endswith("(EUR)")]
    assert len(parts) == 4 and sum(parts) == pytest.approx(result["resource cost (EUR)"])
    transfers = [v for k, v in result.items() if k.startswith("transfers:")]
    assert len(transfers) == 5 and sum(transfers) == pytest.approx(0.0, abs=1e-6)
    assert result["DER dispatched up (MWh)"] > 0.0


def test_the_checked_periods_hold_every_invariant(noon):
    events = noon.tables()["events"]
    assert not (events.kind == "invariant_violated").any(), events.message.tolist()


def test_side_by_side_prints_whole_numbers_as_integers():
    links = pd.DataFrame({"link": ["dso -> tso"], "messages": [3], "bytes": [1200]})
    figures = {"violations": 12.0, "cost (EUR)": 1234.56, "big (EUR)": 2_345_678.9, "zero": -0.0}
    text = side_by_side([RunReport("hybrid", Path("out"), figures, links, 7, 3.25)])
    rows = {
        line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1] for line in text.splitlines()[1:7]
    }
    assert rows == {
        "violations": "12",
        "cost (EUR)": "1,234.6",
        "big (EUR)": "2,345,679",
        "zero": "0",
        "events": "7",
        "wall time (s)": "3.2",
    }
