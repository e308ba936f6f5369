"""One registry per pluggable family: every member loads, and the config schema and the CLI
allow exactly the registered names."""

from __future__ import annotations

import pytest

from market_sim import registry
from market_sim.cli import _parser
from market_sim.config import ConfigError, parse_config
from tests.conftest import QUICKSTART

FAMILIES = [
    registry.COORDINATION_MODELS,
    registry.VALIDATION_METHODS,
    registry.PRIORITY_RULES,
    registry.PRICING_RULES,
]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.what)
def test_every_member_loads(family):
    for name in family.names:
        assert callable(family.load(name)), name


def test_coordination_models_are_named_as_registered():
    for name in registry.COORDINATION_MODELS.names:
        assert registry.COORDINATION_MODELS.load(name).name == name


def test_the_cli_offers_the_registered_models():
    run = _parser()._subparsers._group_actions[0].choices["run"]
    (model,) = [a for a in run._actions if a.dest == "model"]
    assert tuple(model.choices) == registry.COORDINATION_MODELS.names


@pytest.mark.parametrize(
    "path, family",
    [
        (("models",), registry.COORDINATION_MODELS),
        (("dsos", 0, "validation", "method"), registry.VALIDATION_METHODS),
        (("dso_market", "priority"), registry.PRIORITY_RULES),
        (("settlement", "pricing"), registry.PRICING_RULES),
    ],
)
def test_the_config_allows_exactly_the_registered_names(path, family):
    import yaml

    def config_with(value):
        data = yaml.safe_load(QUICKSTART.read_text())
        node = data
        for key in path[:-1]:
            node = node[key] if isinstance(node, list) else node.setdefault(key, {})
        node[path[-1]] = [value] if path == ("models",) else value
        return parse_config(data)

    for name in family.names:
        config_with(name)
    with pytest.raises(ConfigError, match=f"not a {family.what}; allowed: '{family.names[0]}'"):
        config_with("not_registered")
