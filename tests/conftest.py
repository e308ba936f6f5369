"""Shared fixtures: the quickstart scenario, shortened, with its networks loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from market_sim.config import load_config
from market_sim.logs import quiet_third_party
from market_sim.markets.transmission import load_case
from market_sim.model import MarketModel
from market_sim.scenario import load_networks

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"

quiet_third_party()


@pytest.fixture(scope="session")
def quickstart():
    return load_config(QUICKSTART)


@pytest.fixture(scope="session")
def networks(quickstart):
    return load_networks(quickstart)


@pytest.fixture(scope="session")
def case39():
    return load_case("case39")


@pytest.fixture(scope="session")
def make_model(quickstart, networks, case39):
    """Build a MarketModel of the quickstart under one coordination model, checking the
    invariants after every period (a violation is an ``invariant_violated`` event)."""

    def make(model: str, **changes) -> MarketModel:
        config = quickstart.for_model(model)
        if changes:
            config = config.model_copy(update=changes)
        return MarketModel(config, networks, case39, check=True)

    return make
