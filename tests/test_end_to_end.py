"""The command line end to end: a day of one model, its run folder, determinism, replay."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from market_sim import load_results
from market_sim.cli import main
from market_sim.grid.pandapower_reference import replay_power_flow
from market_sim.tables import TABLES, tables_markdown
from market_sim.types import Limits
from tests.conftest import QUICKSTART, ROOT


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same config and seed, run twice into two folders."""
    folders = []
    for name in ("first", "second"):
        out = tmp_path_factory.mktemp(name)
        argv = ["run", str(QUICKSTART), "--model", "dso_managed", "--out", str(out)]
        assert main([*argv, "--no-progress", "--check"]) == 0
        folders.append(out / "quickstart" / "dso_managed")
    return folders


def test_run_folder_holds_config_versions_and_tables(two_runs):
    folder = two_runs[0]
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["models"] == ["dso_managed"] and config["seed"] == 42
    info = json.loads((folder / "run.json").read_text())
    assert info["seed"] == 42 and info["periods"] == 96
    assert {"pandapower", "pyomo", "highspy", "mesa"} <= set(info["packages"])
    tables = load_results(folder)
    assert set(tables) == set(TABLES)
    for name, columns in TABLES.items():
        assert list(tables[name].columns) == list(columns), name
    assert tables["grid"].period.nunique() == 96
    assert len(tables["messages"]) > 0 and tables["bids"].mw.ge(0).all()


def test_same_config_and_seed_same_tables(two_runs):
    first, second = (load_results(f) for f in two_runs)
    for name in TABLES:
        if name != "timings":
            pd.testing.assert_frame_equal(first[name], second[name], check_exact=True, obj=name)


def test_replaying_injections_reproduces_the_grid_row(two_runs):
    """Anyone can rebuild a period from the SimBench code and the injections table."""
    tables = load_results(two_runs[0])
    config = yaml.safe_load((two_runs[0] / "config.yaml").read_text())
    codes = {d["name"]: d["simbench_code"] for d in config["dsos"]}
    limits = {d["name"]: Limits(**d["limits"]) for d in config["dsos"]}
    grid = tables["grid"]
    for dso in codes:
        busiest = grid[grid.dso == dso].sort_values("vm_max_pu").iloc[-1]
        rows = tables["injections"].query("period == @busiest.period and dso == @dso")
        replay = replay_power_flow(codes[dso], rows, limits[dso])
        for field in (
            "vm_min_pu",
            "vm_max_pu",
            "max_line_loading_percent",
            "max_trafo_loading_percent",
            "interface_p_mw",
        ):
            assert np.isclose(getattr(replay, field), busiest[field], atol=1e-6), (dso, field)
        assert (
            replay.n_violations
            == busiest[["n_voltage_violations", "n_line_violations", "n_trafo_violations"]].sum()
        )


def test_readme_documents_every_column():
    readme = (ROOT / "README.md").read_text()
    assert tables_markdown() in readme, "regenerate with: python -m market_sim.tables"
    assert "make run" in readme and "make test" in readme
