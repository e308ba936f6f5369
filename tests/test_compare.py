"""``market-sim compare`` end to end on a short day: its files, its rows, and the data the
TSO-DSO link carries under tso_managed (the real network state) against dso_managed."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from market_sim import load_results
from market_sim.cli import main
from market_sim.compare import run_measures
from market_sim.table_one import CLAIMS, number
from market_sim.verdict_rules import CORE, VERDICTS
from tests.conftest import QUICKSTART

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """The quickstart day in hourly periods (24 instead of 96), compared."""
    out = tmp_path_factory.mktemp("compare")
    config = yaml.safe_load(QUICKSTART.read_text())
    config |= {"name": "hourly", "period_minutes": 60}
    path = out / "hourly.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["compare", str(path), "--out", str(out)]) == 0
    return out / "hourly"


def test_compare_writes_the_measured_table_one(compared):
    folder = compared / "comparison"
    table = pd.read_csv(folder / "comparison.csv")
    assert table.id.tolist() == [c.id for c in CLAIMS]  # one row per claim
    assert set(table.verdict) <= set(VERDICTS)
    assert table.rule.str.startswith(("supported if", "not measurable")).all()
    assert set(CORE) <= set(table.columns)
    text = (folder / "comparison.md").read_text()
    assert all(f"| {c.id} |" in text for c in CLAIMS)
    measures = pd.read_csv(folder / "measures.csv", index_col="measure")
    assert list(measures.columns) == list(CORE)
    assert measures.at["bytes: aggregator -> dso", "tso_managed"] == 0  # a link it never uses
    charts = sorted(folder.glob("fig_*.png"))
    assert len(charts) >= 10
    assert all(p.read_bytes().startswith(PNG) for p in charts)
    # the figures in the table are the runs' own KPIs
    validated = table.set_index("id").at["T4a", "tso_managed"]
    kpis = load_results(compared / "tso_managed")["kpis"]
    up = kpis[kpis.name == "der_validated_up_mwh"].value.sum()
    assert validated.startswith(f"{number(up)} / ")
    assert measures.at["der_validated_up_mwh", "tso_managed"] == pytest.approx(up, rel=1e-12)


def test_every_run_folder_is_a_run_with_its_summary(compared):
    for model in CORE:
        folder = compared / model
        assert yaml.safe_load((folder / "config.yaml").read_text())["models"] == [model]
        tables = load_results(folder)
        assert tables["grid"].period.nunique() == 24
        summary = pd.read_csv(folder / "summary.csv").set_index("name").value
        assert summary["resource cost (EUR)"] == pytest.approx(
            tables["kpis"].query("name == 'resource_cost_eur'").value.sum()
        )
        assert "| dso -> tso |" in (folder / "summary.md").read_text()


def test_tso_dso_link_carries_more_under_tso_managed(compared, networks):
    """Step 1b ships the real network state: every bus's voltage and every line's loading of
    each DSO network, every period; so tso_managed's TSO-DSO link carries more bytes than
    dso_managed's aggregated offers and dispatch."""
    state = load_results(compared / "tso_managed")["operational_data"]
    for (_, dso), rows in state.groupby(["period", "dso"], observed=True):
        net = networks[dso].net
        buses, lines = rows[rows.element == "bus"], rows[rows.element == "line"]
        assert sorted(buses.element_index) == sorted(net.bus.index)
        assert sorted(lines.element_index) == sorted(net.line.index)
        assert buses.vm_pu.notna().all() and lines.loading_percent.notna().all()
    assert state.period.nunique() == 24

    def tso_dso_bytes(model: str) -> int:
        messages = load_results(compared / model)["messages"]
        ends = messages[["sender_role", "receiver_role"]]
        between = (ends.sender_role + ends.receiver_role).isin(["tsodso", "dsotso"])
        return int(messages.bytes[between].sum())

    assert tso_dso_bytes("tso_managed") > tso_dso_bytes("dso_managed") > 0
    measures = pd.read_csv(compared / "comparison" / "measures.csv", index_col="measure")
    assert measures.at["tso_dso_bytes", "tso_managed"] == tso_dso_bytes("tso_managed")


def test_an_unknown_variant_is_one_line_and_exit_2(capsys, tmp_path):
    code = main(["compare", str(QUICKSTART), "--variants", "no_such", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--variants: 'no_such' is no option of a coordination model; allowed:" in err[0]
    assert "'pre_validation'" in err[0]
    assert not any(tmp_path.iterdir())  # nothing simulated


def test_run_measures_on_hand_made_tables():
    """Sums (MW KPIs averaged), NaN in a period makes the figure unknown, compute per
    operator, and bytes between TSO and DSOs counted in both directions, internal steps not."""
    kpis = pd.DataFrame(
        {
            "period": [0, 0, 0, 1, 1, 1],
            "name": ["resource_cost_eur", "need_mw", "unserved_mwh"] * 2,
            "value": [10.0, 4.0, 0.0, 20.0, 6.0, float("nan")],
            "unit": ["EUR", "MW", "MWh"] * 2,
        }
    )
    msg = [  # sender, receiver, sender_role, receiver_role, kind, step, bytes
        ("agg", "tso", "aggregator", "tso", "bids", "1a", 100),
        ("north", "tso", "dso", "tso", "operational_data", "1b", 40),
        ("tso", "north", "tso", "dso", "dispatch", "3", 7),
        ("tso", "tso", "tso", "tso", "validation", "2a", 1000),
    ]
    messages = pd.DataFrame(
        msg, columns=["sender", "receiver", "sender_role", "receiver_role", "kind", "step", "bytes"]
    )
    tables = {
        "kpis": kpis,
        "timings": pd.DataFrame({"role": ["tso", "north", "north", "south", "grid"],
                                 "seconds": [3.0, 1.0, 1.5, 4.0, 9.0]}),
        "grid": pd.DataFrame({"dso": ["north", "south"]}),
        "clearing_runs": pd.DataFrame({"n_constraints": [10, 20]}),
        "messages": messages,
    }  # fmt: skip
    got = run_measures(tables, 0.25)
    assert got["resource_cost_eur"] == 30.0 and got["need_mw"] == 5.0
    assert math.isnan(got["unserved_mwh"])
    assert math.isnan(got["violations_after_delivery"])  # no violation KPI: unknown, not 0
    assert got["tso_compute_s"] == 3.0 and got["dso_compute_s_per_dso"] == 3.25
    assert got["largest_operator_compute_s"] == 4.0 and got["tso_constraints_mean"] == 15.0
    assert got["tso_dso_bytes"] == 47 and got["tso_link_bytes"] == 147
    assert got["operational_data_bytes"] == 40 and got["message_steps"] == 4
    assert got["bytes: dso -> tso"] == 40 and got["messages: aggregator -> tso"] == 1
