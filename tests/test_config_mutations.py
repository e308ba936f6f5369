"""Property: any mutation of the quickstart config either fails with exit 2 and one line, or
is a scenario that loads and runs (issue 10).

Mutations drop keys or list entries, replace values by wrong types, NaN, infinities, negative,
huge or odd strings, duplicate list entries and top-level keys. A mutant that passes the CLI's
checks reaches the simulation (stubbed here: a full run of each would take minutes); its model
is built, and the first few of them run one real period, which must not raise.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import market_sim.runner
import market_sim.scenario
from market_sim.cli import main
from market_sim.model import MarketModel
from tests.conftest import QUICKSTART

DATA = yaml.safe_load(QUICKSTART.read_text())
#: how many valid mutants run one real period (each about a second)
REAL_PERIODS = 3


def _paths(node, prefix=()):
    """Every mapping key and list index of ``node``, as a tuple path."""
    if prefix:
        yield prefix
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        yield from _paths(child, (*prefix, key))


PATHS = list(_paths(DATA))
ODD = [math.nan, math.inf, -math.inf, -1, -1e9, 1e300, 10**30, 0, 0.5, "", "tso", "../x", "x y"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(ODD),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from([[], {}, [1, "a"], {"a": 1}]),
)
MUTATION = st.tuples(
    st.sampled_from(["drop", "replace", "duplicate"]), st.sampled_from(PATHS), VALUES
)


def _mutate(data: dict, mutations) -> str:
    """The YAML text of ``data`` after ``mutations`` (ones whose path is gone are skipped)."""
    data = copy.deepcopy(data)
    extra = []
    for op, path, value in mutations:
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            node = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
        if op == "drop":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = value
        elif isinstance(node, list) and node:
            node.append(copy.deepcopy(node[0]))
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(node))
        elif len(path) == 1:  # a top-level key written twice
            extra.append(yaml.safe_dump({path[0]: value}))
    return yaml.safe_dump(data, sort_keys=False) + "".join(extra)


class Simulated(Exception):
    """The CLI got past every check and would now simulate."""


@pytest.fixture(scope="module")
def stubbed():
    """The CLI with the transmission case loaded once and the simulation replaced by a
    recorder (module scope: hypothesis runs every example in one test call)."""
    seen = []

    def record(scenario, *args, **kwargs):
        seen.append(scenario)
        raise Simulated

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            market_sim.scenario, "load_case", functools.cache(market_sim.scenario.load_case)
        )
        patch.setattr(market_sim.runner, "run_scenario", record)
        yield seen


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(MUTATION, min_size=1, max_size=3))
def test_a_mutated_quickstart_fails_in_one_line_or_runs(stubbed, mutations):
    text = _mutate(DATA, mutations)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutant.yaml"
        path.write_text(text)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                status = main(["run", str(path), "--out", folder, "--no-progress"])
            except Simulated:
                status = None
    if status is not None:
        lines = err.getvalue().splitlines()
        assert status == 2, (status, err.getvalue(), text)
        assert len(lines) == 1 and lines[0].startswith("market-sim: config error: "), lines
        return
    scenario = stubbed[-1]
    config = scenario.config
    sim = MarketModel(config.for_model(config.models[0]), scenario.networks, scenario.transmission)
    if len(stubbed) <= REAL_PERIODS:
        sim.run(periods=1)
        assert len(sim.tables()["grid"]) == len(config.dsos)
