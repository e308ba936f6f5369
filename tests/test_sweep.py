"""Sweeps: a grid expanded into runs on Dask; a failed run reported, finished runs skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import pytest
import yaml

from market_sim.cli import main
from market_sim.config import ConfigError
from market_sim.results import load_results
from market_sim.scenario import load_networks
from market_sim.sweep import execute, load_sweep, run_sweep, set_dotted
from market_sim.tables import KPIS
from tests.conftest import ROOT

#: One MV DSO, hourly periods: a run of one day is 24 periods (seconds, not minutes).
TINY = """
name: tiny
seed: 1
start: 2016-06-21
days: 1
period_minutes: 60
models: [dso_managed]
dsos:
  - name: rural
    simbench_code: 1-MV-rural--2-sw
    interface_bus: 3
aggregators:
  - name: pool
    dsos: [rural]
"""


def write_sweep(folder: Path, grid: str, extra: str = "") -> Path:
    (folder / "tiny.yaml").write_text(TINY)
    path = folder / "sweep.yaml"
    path.write_text(f"base: tiny.yaml\n{extra}grid:\n{textwrap.indent(grid, '  ')}")
    return path


def test_set_dotted_paths() -> None:
    raw = yaml.safe_load(TINY)
    set_dotted(raw, "dsos.0.validation.method", "linear_opf")
    set_dotted(raw, "dsos.*.pv_scale", 1.5)
    set_dotted(raw, "dso_market.priority", "economic")
    assert raw["dsos"][0]["validation"] == {"method": "linear_opf"}
    assert raw["dsos"][0]["pv_scale"] == 1.5 and raw["dso_market"] == {"priority": "economic"}
    with pytest.raises(ConfigError, match=r"dsos\.3\.pv_scale: '3' is not an item"):
        set_dotted(raw, "dsos.3.pv_scale", 1.0)
    with pytest.raises(ConfigError, match="seed.x"):
        set_dotted(raw, "seed.x", 1)


def test_grid_expands_to_validated_runs(tmp_path) -> None:
    path = write_sweep(tmp_path, "seed: [1, 2]\ndso_market.priority: [criticality, economic]\n")
    sweep = load_sweep(path)
    assert sweep.fields == ["model", "seed", "dso_market.priority"]
    assert [r.values["seed"] for r in sweep.runs] == [1, 1, 2, 2]
    assert sweep.runs[1].config.dso_market.priority == "economic"
    assert len({r.run_id for r in sweep.runs}) == 4
    assert load_sweep(path).runs[3].run_id == sweep.runs[3].run_id  # stable ids
    bad = write_sweep(tmp_path, "dsos.0.validation.method: [iterative_pf, magic]\n")
    with pytest.raises(ConfigError, match=r"dsos\.0\.validation\.method.*'magic'") as error:
        load_sweep(bad)
    assert "\n" not in str(error.value)


def test_example_sweep_expands() -> None:
    sweep = load_sweep(ROOT / "configs" / "sweeps" / "example.yaml")
    assert len(sweep.runs) == 32 and sweep.fields[0] == "model"
    assert {r.config.dsos[1].pv_scale for r in sweep.runs} == {1.2, 1.6}
    assert all(r.config.days == 1 and len(r.config.models) == 1 for r in sweep.runs)


def test_set_overrides_the_base_of_every_run_but_not_the_grid() -> None:
    path = ROOT / "configs" / "sweeps" / "example.yaml"
    sweep = load_sweep(path, ["voll_eur_per_mwh=2500", "seed=7"])
    assert {r.config.voll_eur_per_mwh for r in sweep.runs} == {2500.0}
    assert {r.config.seed for r in sweep.runs} == {42, 43}  # the grid sweeps the seed
    with pytest.raises(ConfigError, match="voll_eur_per_mwh"):
        load_sweep(path, ["voll_eur_per_mwh=-1"])


def test_bad_sweep_exits_2_with_one_line(tmp_path, capsys) -> None:
    path = write_sweep(tmp_path, "seed: [1]\n", extra="repeats: 3\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "repeats" in err and len(err.splitlines()) == 1


def test_a_sweep_file_is_read_as_strictly_as_a_config(tmp_path, capsys) -> None:
    path = write_sweep(tmp_path, "seed: [1]\n", extra="set:\n  days: 1\nset:\n  days: 2\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "duplicate key 'set'" in err and len(err.splitlines()) == 1


def test_sweep_with_bad_data_exits_2_before_any_run(tmp_path, capsys) -> None:
    path = write_sweep(tmp_path, "dsos.0.interface_bus: [3, 999]\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "dsos.0.interface_bus" in err and "999" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "runs").exists()


def test_sweep_reports_a_failed_run_and_a_rerun_skips_finished_ones(tmp_path, monkeypatch):
    """Three runs, the seed-2 one raising: the others complete; a rerun runs only that one."""
    path = write_sweep(tmp_path, "seed: [1, 2, 3]\n")
    out = tmp_path / "out"
    real = execute.run_scenario

    def fail_seed_2(scenario, *args, **kwargs):
        if scenario.config.seed == 2:
            raise RuntimeError("deliberate failure")
        return real(scenario, *args, **kwargs)

    loads = []

    def counted(config):
        loads.append(config.seed)
        return load_networks(config)

    monkeypatch.setattr(execute, "run_scenario", fail_seed_2)
    monkeypatch.setattr(execute, "load_networks", counted)
    monkeypatch.setattr(execute, "_loaded", OrderedDict())
    sweep = load_sweep(path)
    first = run_sweep(sweep, out, workers=1, processes=False)
    ids = [r.run_id for r in sweep.runs]
    assert sorted(first.ran) == sorted(ids) and len(loads) == 1  # networks loaded once
    assert list(first.failed) == [ids[1]] and "deliberate failure" in first.failed[ids[1]]

    table = pd.read_parquet(out / "sweep.parquet")
    assert table.equals(first.table)
    assert list(pd.read_csv(out / "sweep.csv").columns) == list(table.columns)
    status = table.groupby("run_id", sort=False).status.first()
    assert list(status) == ["complete", "failed", "complete"]
    failed = table[table.run_id == ids[1]]
    assert len(failed) == 1 and failed.kpi.isna().all()
    assert "RuntimeError: deliberate failure" in failed.error.iloc[0]
    done = table[table.run_id == ids[0]].set_index("kpi")
    assert set(done.index) <= set(KPIS) and done.loc["resource_cost_eur", "unit"] == "EUR"
    assert done.loc["need_mw", "unit"] == "MWh"  # MW per period x the period length
    # the KPI totals are the run's own tables, summed over its 24 periods
    (folder,) = (out / "runs" / ids[0]).glob("tiny/dso_managed")
    kpis = load_results(folder)["kpis"]
    cost = kpis[kpis.name == "resource_cost_eur"]
    assert cost.period.nunique() == 24
    assert done.loc["resource_cost_eur", "value"] == pytest.approx(cost.value.sum(), rel=1e-12)
    runs = table.drop_duplicates("run_id")
    assert list(runs.seed) == [1, 2, 3] and set(runs.model) == {"dso_managed"}

    monkeypatch.setattr(execute, "run_scenario", real)
    again = run_sweep(load_sweep(path), out, workers=1, processes=False)
    assert again.ran == [ids[1]] and sorted(again.skipped) == sorted([ids[0], ids[2]])
    assert not again.failed
    table = pd.read_parquet(out / "sweep.parquet")
    assert set(table.status) == {"complete"}
    unchanged = table[table.run_id == ids[0]].reset_index(drop=True)
    assert unchanged.equals(first.table[first.table.run_id == ids[0]].reset_index(drop=True))


def test_ctrl_c_stops_a_sweep_with_one_line_and_a_rerun_skips_the_finished_runs(tmp_path):
    """Ctrl-C (SIGINT to the command) once a run is sealed: exit 130, one line, no
    traceback; the rerun of the same command runs only the runs not complete."""
    path = write_sweep(tmp_path, "seed: [1, 2, 3]\n")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "market_sim.cli", "sweep", str(path), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([*argv, "--workers", "1"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not any(out.glob(f"runs/*/{execute.MARKER}")):
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "no run sealed in time"
            time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130 and "Traceback" not in err, err
    assert err.splitlines()[-1].endswith(
        "interrupted: rerun the same command to run the runs not yet complete"
    ), err
    sealed = {p.parent.name for p in out.glob(f"runs/*/{execute.MARKER}")}
    finished = {run_id for run_id in sealed if execute.completed(out / "runs" / run_id)}
    assert finished and not (out / "sweep.parquet").exists()

    again = run_sweep(load_sweep(path), out, workers=1, processes=False)
    assert set(again.skipped) == finished and not again.failed
    assert len(again.ran) + len(again.skipped) == 3


def test_the_sweeps_own_workers_log_critical_errors_only():
    """Stopped with the cluster during a heartbeat, a worker process logged a traceback of the
    closed connection (CI of stop 22: the Ctrl-C test above saw it); each worker process of
    our LocalCluster has its ``distributed`` loggers at critical, the driver's keep theirs."""
    import logging

    driver_level = logging.getLogger("distributed").getEffectiveLevel()
    with execute._client(None, 1, processes=True) as client:
        levels = client.run(lambda: logging.getLogger("distributed.worker").getEffectiveLevel())
        assert list(levels.values()) == [logging.CRITICAL]
        assert os.getpid() not in client.run(os.getpid).values()
    assert logging.getLogger("distributed").getEffectiveLevel() == driver_level
