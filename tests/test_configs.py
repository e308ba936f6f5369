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
        sim = MarketModel(config.for_model(model), networks)
        sim.period = 12 * config.periods_per_day // 24  # noon: PV and flexibility available
        sim.run(periods=2)
        tables = sim.tables()
        assert len(tables["grid"]) == 2 * len(config.dsos), (path.name, model)
        assert tables["kpis"].query("name == 'der_offered_mw'").value.gt(0).all()
        assert not tables["events"].kind.isin(["clearing_failed", "schedule_failed"]).any()
