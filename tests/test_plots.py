"""The plots: each figure carries the artists its tables call for, and the report embeds them.

One small run (three noon periods of the quickstart under hybrid and dso_managed, where DER are
dispatched and a transmission line binds in period 49) is written once per module as run folders.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.image import imread
from matplotlib.patches import FancyArrowPatch, StepPatch

from market_sim.cli import main
from market_sim.config import dump_config
from market_sim.grid.flow_summary import monitored_buses
from market_sim.kpis import links, summary
from market_sim.plots import (
    kpi_series,
    load_run,
    merit_order,
    message_sequence,
    model_bars,
    network_at,
    replay_period,
    summary_table,
    write_report,
)
from market_sim.plots.series import PRICE_SERIES
from market_sim.results import write_run
from tests.conftest import QUICKSTART

MODELS = ("hybrid", "dso_managed")
FIRST, PERIODS = 48, 3
UNIFORM, CONGESTED = 48, 49  # hybrid's balancing prices: one price; a spread (line 11 binds)


@pytest.fixture(scope="module")
def run_dirs(make_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("plots")
    folders = []
    for model in MODELS:
        sim = make_model(model)
        sim.period = FIRST
        sim.run(PERIODS)
        folder = out / "quickstart" / model
        write_run(folder, dump_config(sim.config), {"model": model}, sim.tables())
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def runs(run_dirs):
    return [load_run(f) for f in run_dirs]


def _gids(artists, prefix: str) -> list[str]:
    return [a.get_gid() for a in artists if (a.get_gid() or "").startswith(prefix)]


@pytest.mark.parametrize("model", MODELS)
def test_message_sequence_has_a_lane_per_agent_and_an_arrow_per_message(runs, model):
    run = next(r for r in runs if r.label == model)
    messages = run.tables["messages"]
    rows = messages[messages.period == CONGESTED].sort_values(["time_s", "arrival_s"])
    fig = message_sequence(messages, CONGESTED)
    ax = fig.axes[0]
    agents = set(rows.sender) | set(rows.receiver)
    assert sorted(g.split(":", 1)[1] for g in _gids(ax.lines, "lane:")) == sorted(agents)
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == len(rows) == len(_gids(arrows, "message"))
    # in time order, each from its sender's lane to its receiver's
    expected = [f"message:{s}->{r}" for s, r in zip(rows.sender, rows.receiver, strict=True)]
    assert [a.get_gid() for a in arrows] == expected
    texts = [t.get_text() for t in ax.texts]
    for step, kb in zip(rows.step, rows.bytes / 1000, strict=True):
        assert any(t.startswith(f"{step} ") and f"{kb:.1f} kB" in t for t in texts), step
    steps = {"hybrid": {"1", "2", "3a", "3b", "4"}, "dso_managed": {"1", "2a", "2b", "3", "4"}}
    assert set(rows.step) == steps[model]


def test_message_sequence_of_a_period_without_messages_says_which_exist(runs):
    with pytest.raises(ValueError, match="period 7: no messages.*48..50"):
        message_sequence(runs[0].tables["messages"], 7)


def test_kpi_series_has_a_line_per_model_and_kpi_with_the_recorded_values(runs):
    kpis = ("resource_cost_eur", "der_dispatched_up_mwh", "balancing_price_eur_per_mwh")
    fig = kpi_series(runs, kpis)
    lines = [line for ax in fig.axes for line in ax.lines]
    assert len(_gids(lines, "series:")) == len(MODELS) * len(kpis)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(MODELS)
    for run in runs:
        recorded = run.tables["kpis"].query("name == 'resource_cost_eur'").value.to_numpy()
        line = next(x for x in lines if x.get_gid() == f"series:{run.label}:resource_cost_eur")
        y = np.asarray(line.get_ydata(), dtype=float)
        assert len(y) == PERIODS + 1 and np.array_equal(y[:-1], recorded)  # held to the end
        prices = run.tables["prices"].query("market == 'balancing' and period == @CONGESTED")
        price = next(
            x for x in lines if x.get_gid() == f"series:{run.label}:{'balancing_price_eur_per_mwh'}"
        )
        assert np.isclose(price.get_ydata()[CONGESTED - FIRST], prices.price_eur_per_mwh.mean())
    assert "balancing_price_eur_per_mwh" in PRICE_SERIES


def test_kpi_series_names_an_unknown_kpi(runs):
    with pytest.raises(ValueError, match="kpis: got 'cost'; allowed: need_mw"):
        kpi_series(runs, ["cost"])


def test_network_colours_every_bus_by_its_replayed_voltage_and_marks_the_limits(runs):
    run = runs[0]
    grid = run.tables["grid"].query("period == @CONGESTED").set_index("dso")
    for dso in grid.index:
        net, flows = replay_period(run, dso, CONGESTED)
        # the replay is the delivery power flow the grid table summarised
        monitored = flows.vm_pu[monitored_buses(net)]
        assert np.isclose(monitored.min(), grid.loc[dso, "vm_min_pu"], atol=1e-6)
        assert np.isclose(monitored.max(), grid.loc[dso, "vm_max_pu"], atol=1e-6)
        assert np.isclose(
            np.nanmax(flows.line_loading_percent), grid.loc[dso, "max_line_loading_percent"]
        )
        fig = network_at(run, dso, CONGESTED)
        ax = fig.axes[0]
        buses = next(c for c in ax.collections if c.get_gid() == "buses")
        assert isinstance(buses, PathCollection) and len(buses.get_offsets()) == len(net.bus)
        assert np.allclose(buses.get_array(), flows.vm_pu)
        lines = next(c for c in ax.collections if c.get_gid() == "lines")
        assert isinstance(lines, LineCollection) and len(lines.get_segments()) == len(net.line)
        limits = next(d for d in run.config.dsos if d.name == dso).limits
        marked = sorted(line.get_ydata()[0] for a in fig.axes[1:] for line in a.lines)
        assert marked == sorted([limits.vm_min_pu, limits.vm_max_pu, limits.max_loading_percent])


def test_network_rejects_an_unknown_dso(runs):
    with pytest.raises(ValueError, match="dso: got 'urban'; allowed: rural, semiurb"):
        network_at(runs[0], "urban", CONGESTED)


@pytest.mark.parametrize("period", [UNIFORM, CONGESTED])
def test_merit_order_has_a_step_per_offer_and_the_recorded_price(runs, period):
    tables = runs[0].tables
    offers = tables["balancing_offers"].query("period == @period")
    fig = merit_order(tables, period)
    ax = fig.axes[0]
    steps = {p.get_gid(): p.get_data() for p in ax.patches if isinstance(p, StepPatch)}
    up, down = steps["supply"].values, steps["demand"].values
    assert len(up) == (offers.direction == "up").sum() and len(down) == len(offers) - len(up)
    assert np.all(np.diff(up) >= 0) and np.all(np.diff(down) <= 0)  # merit order
    assert np.isclose(
        np.diff(steps["supply"].edges).sum(), offers.query("direction == 'up'").mw.sum()
    )
    need = tables["balancing_buses"].query("period == @period").need_mw.sum()
    assert np.isclose(steps["demand"].edges[0], max(need, 0.0))  # demand starts at the need
    prices = tables["prices"].query("market == 'balancing' and period == @period").price_eur_per_mwh
    drawn = sorted(line.get_ydata()[0] for line in ax.lines if line.get_gid() == "clearing_price")
    expected = [prices.min()] if np.ptp(prices) < 1e-6 else [prices.min(), prices.max()]
    assert np.allclose(drawn, expected)
    assert (period == CONGESTED) == (len(drawn) == 2)


def test_merit_order_of_a_period_without_offers_says_so(runs):
    tables = dict(runs[0].tables)
    tables["balancing_offers"] = tables["balancing_offers"].query("period != @UNIFORM")
    ax = merit_order(tables, UNIFORM).axes[0]
    assert not ax.patches and "no balancing offers in period 48" in ax.texts[0].get_text()
    with pytest.raises(ValueError, match="period: got 7; allowed: 48..50"):
        merit_order(tables, 7)


def test_model_bars_has_a_bar_per_model_and_kpi_at_its_value(runs):
    table = summary_table(runs)
    assert list(table.columns) == list(MODELS)
    assert table.loc["messages", "hybrid"] == summary(runs[0].tables, runs[0].period_h)["messages"]
    kpis = ["resource cost (EUR)", "DER dispatched up (MWh)", "bytes"]
    fig = model_bars(table, kpis)
    bars = [p for ax in fig.axes for p in ax.patches]
    assert len(_gids(bars, "bar:")) == len(MODELS) * len(kpis)
    for bar in bars:
        _, model, kpi = bar.get_gid().split(":", 2)
        assert np.isclose(bar.get_height(), table.loc[kpi, model])
    assert table.loc["bytes", "dso_managed"] == links(runs[1].tables["messages"]).bytes.sum()
    # a plain function of any KPI table (index KPI, columns model)
    plain = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}, index=["x", "y"])
    assert len(model_bars(plain).axes[0].patches) == 2


def test_report_writes_report_md_embedding_existing_figures(run_dirs, runs, tmp_path):
    path = write_report(run_dirs, tmp_path / "report", CONGESTED)
    text = path.read_text()
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    n_dsos = len(runs[0].config.dsos)
    assert len(embedded) == 2 + len(MODELS) * (2 + n_dsos)
    for name in embedded:
        image = imread(path.parent / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert f"## Period {CONGESTED}" in text
    resource_cost = summary(runs[0].tables, runs[0].period_h)["resource cost (EUR)"]
    assert f"| resource cost (EUR) | {resource_cost:,.1f} |" in text


def test_report_command_and_its_errors(run_dirs, tmp_path, capsys):
    dirs = [str(d) for d in run_dirs]
    assert main(["report", dirs[0], "--period", str(CONGESTED)]) == 0  # one run: quicker
    default = run_dirs[0].parent / "report" / "report.md"
    assert capsys.readouterr().out.strip() == f"report: {default}" and default.is_file()
    for argv, expected in (
        ([*dirs, "--period", "7"], "--period: got 7; allowed: a period of every run (48..50)"),
        ([str(tmp_path)], f"RUN_DIR: got '{tmp_path}'; allowed: a folder written by market-sim"),
    ):
        assert main(["report", *argv, "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "Traceback" not in err


def test_run_with_report_writes_the_report_of_its_folders(run_dirs, runs, tmp_path, monkeypatch):
    import market_sim.runner

    def finished(scenario, out, *args, **kwargs):
        return [
            market_sim.runner.RunReport(
                r.label, d, summary(r.tables, r.period_h), links(r.tables["messages"]), 0, 1.0
            )
            for r, d in zip(runs[:1], run_dirs[:1], strict=True)
        ]

    monkeypatch.setattr(market_sim.runner, "run_scenario", finished)
    shutil.rmtree(run_dirs[0].parent / "report", ignore_errors=True)
    argv = ["run", str(QUICKSTART), "--out", str(tmp_path), "--no-progress", "--report"]
    assert main(argv) == 0
    text = (run_dirs[0].parent / "report" / "report.md").read_text()
    assert "(hybrid_sequence.png)" in text and "(hybrid_network_rural.png)" in text
