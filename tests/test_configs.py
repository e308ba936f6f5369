"""Every scenario in configs/ is valid and runs two periods under each of its models."""

from __future__ import annotations

import pytest

from market_sim.config import load_config
from market_sim.model import MarketModel
from market_sim.scenario import load_networks
from tests.conftest import ROOT

#: scenarios whose networks take long to load: run by the benchmarks, not by `make test`
SLOW = {"mvlv-urban.yaml"}

CONFIGS = [
    pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p
    for p in sorted((ROOT / "configs").glob("*.yaml"))
]


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
