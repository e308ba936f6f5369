"""Every scenario in configs/ is valid and runs two periods under each of its models; the slow
test runs each for two days under every registered model (issue 8, item 8: ehv.yaml's night
schedules were infeasible)."""

from __future__ import annotations

import pytest

from market_sim.config import load_config
from market_sim.model import MarketModel
from market_sim.registry import COORDINATION_MODELS
from market_sim.results import load_results
from market_sim.runner import run_scenario
from market_sim.scenario import load_networks, load_scenario
from tests.conftest import ROOT

#: scenarios whose networks take long to load: run by the benchmarks, not by `make test`
SLOW = {"mvlv-urban.yaml"}

#: every shipped scenario (sweep files, in configs/sweeps/, are tested by tests/test_sweep.py)
PATHS = sorted((ROOT / "configs").glob("*.yaml"))
CONFIGS = [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p for p in PATHS]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_runs_two_periods_of_each_model(path):
    config = load_config(path)
    networks = load_networks(config)
    for model in config.models:
        sim = MarketModel(config.for_model(model), networks, check=True)
        sim.period = 12 * config.periods_per_day // 24  # noon: PV and flexibility available
        sim.run(periods=2)
        tables = sim.tables()
        assert len(tables["grid"]) == 2 * len(config.dsos), (path.name, model)
        offered = tables["kpis"].query("name.str.startswith('der_offered_')")
        assert offered.groupby("period").value.sum().gt(0).all()
        events = tables["events"]
        assert not events.kind.isin(["clearing_failed", "schedule_failed"]).any()
        violated = events[events.kind == "invariant_violated"].message
        assert violated.empty, (path.name, model, violated.tolist())


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_config_runs_two_days_under_every_model(path, tmp_path):
    """Two whole days, nights included, under every registered model: each run finishes
    with every table written, and the schedule is solved in every period."""
    scenario = load_scenario(load_config(path), source=path.name)
    models = list(COORDINATION_MODELS.names)
    reports = run_scenario(scenario, tmp_path, models=models, days=2, progress=False)
    assert [r.model for r in reports] == models
    periods = 2 * scenario.config.periods_per_day
    for report in reports:
        # the tables asked about (load_results checks that every table is there): two days
        # of tso_managed on the 10k-bus grid hold 660 million LP coefficients
        tables = load_results(report.folder, tables=("kpis", "grid", "events"))
        assert tables["kpis"].period.nunique() == periods, (path.name, report.model)
        assert len(tables["grid"]) == periods * len(scenario.config.dsos)
        assert not tables["events"].kind.eq("schedule_failed").any(), (path.name, report.model)
