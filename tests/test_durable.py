"""Year-long runs survive crashes: chunks on disk, a crash-consistent folder, resume, Ctrl-C.

The runs here are real ``market-sim run`` processes, killed with SIGKILL or interrupted with
SIGINT in the middle of a multi-day run, then resumed: every table must come out bit for bit
as an uninterrupted run's. The fast variants run a tiny config (the quickstart at 60-minute
periods, two days of 24 periods, a chunk a day, the fastest model); the slow one the
quickstart itself over three days.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from market_sim import load_results
from market_sim.cli import main
from market_sim.progress import Progress
from market_sim.results import RunFolderError, schema, write_run
from market_sim.run_folder import LOCK, STATE, ModelFolder
from market_sim.tables import TABLES
from tests.conftest import QUICKSTART, ROOT

MODEL = "dso_managed"  # the fastest model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The quickstart at 60-minute periods over two days (two chunks of 24 periods), with its
    rural DSO only."""
    config = yaml.safe_load(QUICKSTART.read_text())
    rural = config["dsos"][0]
    config |= {"period_minutes": 60, "days": 2, "dsos": [rural]}
    config["aggregators"] = [{"name": "ruralcoop", "dsos": [rural["name"]]}]
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _argv(config: Path, out: Path, *more: str) -> list[str]:
    return ["run", str(config), "--model", MODEL, "--out", str(out), "--no-progress", *more]


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Every table but the wall times, which differ between any two runs."""
    return {n: t for n, t in load_results(folder).items() if n != "timings"}


def _assert_same_tables(a: Path, b: Path) -> None:
    first, second = _tables(a), _tables(b)
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name], check_exact=True, obj=name)


@pytest.fixture
def start():
    """Start ``market-sim run`` as a real process; killed at the test's end if still running."""
    children = []

    def started(config: Path, out: Path, *more: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "market_sim.cli", *_argv(config, out, *more)]
        child = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        children.append(child)
        return child

    yield started
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate()


def _wait_for_chunk(folder: Path, child: subprocess.Popen, timeout_s: float = 600) -> None:
    """Until the run has written its first chunk (its state and run.json), still going."""
    deadline = time.monotonic() + timeout_s
    while not (folder / STATE).is_file() or _info(folder)["last_completed_period"] is None:
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "no chunk written in time"
        time.sleep(0.05)


def _info(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


@pytest.fixture(scope="module")
def straight(tiny, tmp_path_factory) -> Path:
    """An uninterrupted run, into a scenario folder an earlier run left files in, with
    --overwrite."""
    out = tmp_path_factory.mktemp("straight")
    earlier = out / "quickstart"
    (earlier / "hybrid" / "bids").mkdir(parents=True)  # another model of an earlier run
    (earlier / "hybrid" / "bids" / "part-00000.parquet").write_bytes(b"old")
    (earlier / MODEL / "bids").mkdir(parents=True)  # a longer earlier run: a chunk more
    (earlier / MODEL / "bids" / "part-00007.parquet").write_bytes(b"old")
    (earlier / "notes.txt").write_text("old")
    assert main(_argv(tiny, out, "--overwrite")) == 0
    return earlier / MODEL


def test_overwrite_leaves_no_file_of_the_earlier_run(straight):
    scenario = straight.parent
    assert sorted(p.name for p in scenario.iterdir()) == [MODEL]  # no lock left either
    expected = {"config.yaml", "run.json", STATE, "summary.csv", "summary.md"} | {
        f"{t}/part-0000{i}.parquet" for t in TABLES for i in (0, 1)
    }
    found = {str(p.relative_to(straight)) for p in straight.rglob("*") if p.is_file()}
    assert found == expected


def test_tables_are_datasets_of_one_file_per_chunk_readable_directly(straight):
    info = json.loads((straight / "run.json").read_text())
    assert info["status"] == "complete" and info["chunks"] == 2
    assert info["last_completed_period"] == 47 and info["seed"] == 42
    tables = load_results(straight)
    assert tables["grid"].period.tolist() == sorted(tables["grid"].period)
    assert tables["grid"].period.nunique() == 48
    for name in ("bids", "messages", "kpis"):
        direct = pd.read_parquet(straight / name)  # pandas/pyarrow read the folder itself
        pd.testing.assert_frame_equal(direct, tables[name], check_exact=True, obj=name)
    chunk = pd.read_parquet(straight / "grid" / "part-00001.parquet")
    assert chunk.period.min() == 24 and chunk.period.max() == 47


def test_a_new_run_into_an_earlier_run_is_refused_with_one_line(straight, tiny, capsys):
    status = main(_argv(tiny, straight.parents[1]))
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "holds an earlier run" in err and "--overwrite" in err and "--resume" in err


def test_sigkill_then_resume_gives_the_uninterrupted_tables(
    straight, tiny, tmp_path, caplog, start
):
    child = start(tiny, tmp_path)
    folder = tmp_path / "quickstart" / MODEL
    _wait_for_chunk(folder, child)
    child.send_signal(signal.SIGKILL)  # in the middle of the second chunk
    child.wait()
    info = _info(folder)
    assert info["status"] == "running" and info["last_completed_period"] == 23
    with pytest.raises(RunFolderError, match="'running', not 'complete'"):
        load_results(folder)
    half = load_results(folder, allow_incomplete=True)
    assert half["grid"].period.max() == 23  # what was written is readable meanwhile,
    assert all(t.period.max() <= 23 for t in half.values() if len(t))  # the same in every table

    with caplog.at_level(logging.WARNING):
        assert main(["run", "--resume", str(folder), "--no-progress"]) == 0
    assert "taking over" in caplog.text  # the killed run's lock
    assert _info(folder)["status"] == "complete"
    _assert_same_tables(straight, folder)
    assert not (folder.parent / LOCK).exists()


def test_chunks_of_a_fraction_of_a_day_resume_like_whole_days(tiny, tmp_path, start):
    """``--chunk-days 0.25`` (six 60-minute periods: what bounds the memory of a large
    network's chunk) writes a part per quarter day, and a run killed in its second chunk
    resumes, from the middle of a day, to the tables of an uninterrupted run so chunked."""
    whole = tmp_path / "whole"
    assert main(_argv(tiny, whole, "--chunk-days", "0.25")) == 0
    straight = whole / "quickstart" / MODEL
    assert _info(straight)["chunks"] == 8
    first = pd.read_parquet(straight / "grid" / "part-00001.parquet")
    assert (first.period.min(), first.period.max()) == (6, 11)

    child = start(tiny, tmp_path / "killed", "--chunk-days", "0.25")
    folder = tmp_path / "killed" / "quickstart" / MODEL
    _wait_for_chunk(folder, child)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert _info(folder)["last_completed_period"] < 47
    assert main(["run", "--resume", str(folder), "--no-progress"]) == 0
    _assert_same_tables(straight, folder)


def test_ctrl_c_finishes_the_period_exits_130_with_one_line_and_resumes(
    straight, tiny, tmp_path, start
):
    child = start(tiny, tmp_path)
    folder = tmp_path / "quickstart" / MODEL
    _wait_for_chunk(folder, child)
    time.sleep(0.2)  # in the second chunk's first period
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130 and "Traceback" not in err
    lines = [line for line in err.splitlines() if "resume" in line]
    assert lines == err.splitlines()[-1:], err  # one line, the last
    info = _info(folder)
    last = info["last_completed_period"]
    assert info["status"] == "interrupted" and 23 < last < 47  # the periods since the chunk
    assert lines[0] == (
        f"market-sim: interrupted after period {last} of 48; "
        f"resume with: market-sim run --resume {folder}"
    )
    assert load_results(folder, allow_incomplete=True)["grid"].period.max() == last

    assert main(["run", "--resume", str(folder), "--no-progress"]) == 0
    # the chunk cut short is done again from its start (the state of the chunk before), with
    # the solvers' warm starts of the uninterrupted run: the same tables, bit for bit
    _assert_same_tables(straight, folder)


def test_a_second_writer_is_refused_with_one_line_naming_the_holder(tiny, tmp_path, capsys):
    holder = subprocess.Popen(["sleep", "60"])
    try:
        scenario = tmp_path / "quickstart"
        scenario.mkdir()
        host = socket.gethostname()
        (scenario / LOCK).write_text(json.dumps({"pid": holder.pid, "host": host}))
        status = main(_argv(tiny, tmp_path))
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert f"pid {holder.pid} on {host}" in err and "another run" in err
        assert not (scenario / MODEL).exists()  # refused before anything was written
    finally:
        holder.kill()
        holder.wait()


def test_a_failing_run_is_marked_failed_with_its_error_and_raises(tiny, tmp_path, monkeypatch):
    from market_sim.config import load_config
    from market_sim.model import MarketModel
    from market_sim.runner import run_scenario
    from market_sim.scenario import load_scenario

    step = MarketModel.step

    def failing(self):
        if self.period == 30:
            raise RuntimeError("made up")
        step(self)

    monkeypatch.setattr(MarketModel, "step", failing)
    scenario = load_scenario(load_config(tiny))
    with pytest.raises(RuntimeError, match="made up"):
        run_scenario(scenario, tmp_path, [MODEL], progress=False)
    folder = tmp_path / "quickstart" / MODEL
    info = _info(folder)
    assert info["status"] == "failed" and info["error"] == "RuntimeError: made up"
    assert info["last_completed_period"] == 23
    assert not (folder.parent / LOCK).exists()


def _assert_full_disk_line(err: str, folder: Path) -> None:
    """The last line of stderr says the disk is full and how to resume ``folder``."""
    last = err.strip().splitlines()[-1]
    assert last.startswith("market-sim: writing the results failed: [Errno 28] No space")
    assert last.endswith(f"market-sim run --resume {folder}")


def test_a_full_disk_is_one_line_status_1_and_the_run_resumes(
    straight, tiny, tmp_path, monkeypatch, capsys
):
    """No space left while writing the second chunk (the disk full for run.json too): one
    line saying how to resume, status 1; the first chunk is kept and the resumed run gives the
    uninterrupted tables."""
    import errno

    from market_sim import run_folder

    write_part, write_info = run_folder.write_part, run_folder.write_run_info
    full = OSError(errno.ENOSPC, "No space left on device")

    def no_room(*args):
        raise full

    def part(folder, table, index, arrow):
        if index == 1:
            monkeypatch.setattr(run_folder, "write_run_info", no_room)
            raise full
        write_part(folder, table, index, arrow)

    monkeypatch.setattr(run_folder, "write_part", part)
    assert main(_argv(tiny, tmp_path)) == 1
    folder = tmp_path / "quickstart"
    _assert_full_disk_line(capsys.readouterr().err, folder)
    monkeypatch.setattr(run_folder, "write_part", write_part)
    monkeypatch.setattr(run_folder, "write_run_info", write_info)
    info = _info(folder / MODEL)  # "running": marking it failed needed the disk too
    assert info["status"] == "running" and info["last_completed_period"] == 23
    assert main(["run", "--resume", str(folder), "--no-progress"]) == 0
    _assert_same_tables(straight, folder / MODEL)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB tmpfs at ``tmp_path / "disk"`` (root only), which the test may grow."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_in_a_jobs_worker_is_the_same_one_line(straight, tiny, small_disk, capsys):
    """With --jobs the runs write in worker processes: a real full disk there stops the run
    with the same one line and status 1, and the scenario folder resumes once there is room."""
    argv = ["run", str(tiny), "--model", MODEL, "--model", "hybrid", "--jobs", "2"]
    assert main([*argv, "--out", str(small_disk), "--no-progress"]) == 1
    folder = small_disk / "quickstart"
    _assert_full_disk_line(capsys.readouterr().err, folder)
    assert {_info(folder / m)["status"] for m in (MODEL, "hybrid")} <= {"failed", "running"}
    remount = ["mount", "-o", "remount,size=64m", str(small_disk)]
    subprocess.run(remount, check=True)
    assert main(["run", "--resume", str(folder), "--jobs", "2", "--no-progress"]) == 0
    _assert_same_tables(straight, folder / MODEL)


def test_load_results_reads_the_tables_asked_for(straight):
    """Only the tables named (a large run's do not fit in memory together); a name that is
    not a table is a one-line error naming it and the tables there are."""
    tables = load_results(straight, tables=["grid", "kpis"])
    assert list(tables) == ["grid", "kpis"] and len(tables["grid"]) == 48
    with pytest.raises(ValueError, match=r"tables: got \['grids'\]; allowed: the tables"):
        load_results(straight, tables=["grids"])


def test_load_results_refuses_an_incomplete_folder_unless_asked(tmp_path):
    empty = {
        n: pd.DataFrame({c: pd.Series(dtype=t) for c, (t, _) in TABLES[n].items()}) for n in TABLES
    }
    write_run(tmp_path, "", {"periods": 1}, empty)
    assert set(load_results(tmp_path)) == set(TABLES)
    info = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    with pytest.raises(RunFolderError) as refused:
        load_results(tmp_path)
    assert "\n" not in str(refused.value) and "'interrupted'" in str(refused.value)
    assert "allow_incomplete=True" in str(refused.value)
    assert set(load_results(tmp_path, allow_incomplete=True)) == set(TABLES)


def test_a_resume_drops_the_files_of_a_half_written_chunk(tmp_path):
    folder = ModelFolder(tmp_path)
    folder.create("", {"periods": 2})
    empty = {n: schema(n).empty_table() for n in TABLES}
    folder.write_chunk(0, empty, b"state of chunk 0")
    (tmp_path / "bids" / "part-00001.parquet").write_bytes(b"half")  # killed while writing
    (tmp_path / "kpis" / ".part-00001.parquet.x.tmp").write_bytes(b"half")
    checkpoint = folder.checkpoint()
    assert checkpoint.state == b"state of chunk 0" and checkpoint.next_chunk == 1
    assert sorted(p.name for p in (tmp_path / "bids").iterdir()) == ["part-00000.parquet"]
    assert sorted(p.name for p in (tmp_path / "kpis").iterdir()) == ["part-00000.parquet"]


def test_progress_off_a_terminal_is_a_log_line_every_five_percent(caplog):
    with caplog.at_level(logging.INFO, "market_sim.progress"), Progress(200) as bar:
        bar.describe(MODEL)
        for _ in range(200):
            bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 20 and lines[-1].startswith(f"{MODEL}: 200/200 periods (100 %)")


@pytest.mark.slow
def test_sigkill_of_a_three_day_quickstart_run_then_resume(tmp_path, start):
    """The quickstart itself (96 periods a day), killed on its second or third day."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(_argv(QUICKSTART, straight, "--days", "3")) == 0
    child = start(QUICKSTART, killed, "--days", "3")
    folder = killed / "quickstart" / MODEL
    _wait_for_chunk(folder, child)
    time.sleep(float(np.random.default_rng(0).uniform(0, 8)))
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert _info(folder)["status"] == "running"
    assert main(["run", "--resume", str(killed / "quickstart"), "--no-progress"]) == 0
    _assert_same_tables(straight / "quickstart" / MODEL, folder)
    shutil.rmtree(tmp_path)


def test_a_scenario_folder_resumes_each_unfinished_model(tiny, tmp_path, monkeypatch, capsys):
    """Stopped at once (a second Ctrl-C) in its first model, before any chunk: that model is
    interrupted, the next one pending; --resume on the scenario folder runs both."""
    from market_sim.model import MarketModel

    step = MarketModel.step

    def stopped(self):
        if self.period == 10 and not getattr(stopped, "done", False):
            stopped.done = True
            raise KeyboardInterrupt
        step(self)

    monkeypatch.setattr(MarketModel, "step", stopped)
    argv = [*_argv(tiny, tmp_path, "--days", "1"), "--model", "hybrid"]
    assert main(argv) == 130
    scenario = tmp_path / "quickstart"
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        f"market-sim: interrupted after no period; resume with: market-sim run --resume {scenario}"
    )
    assert [_info(scenario / m)["status"] for m in (MODEL, "hybrid")] == ["interrupted", "pending"]

    assert main(["run", "--resume", str(scenario), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert MODEL in out and "hybrid" in out  # both in the side-by-side summary
    for model in (MODEL, "hybrid"):
        assert _info(scenario / model)["status"] == "complete"
        assert load_results(scenario / model)["grid"].period.tolist() == list(range(24))


def test_jobs_run_the_models_in_processes_with_the_tables_of_a_run_in_turn(tiny, tmp_path):
    models = ["--model", "hybrid", "--days", "1"]
    assert main([*_argv(tiny, tmp_path / "in_turn"), *models]) == 0
    assert main([*_argv(tiny, tmp_path / "jobs"), *models, "--jobs", "2"]) == 0
    for model in (MODEL, "hybrid"):
        folder = tmp_path / "jobs" / "quickstart" / model
        assert _info(folder)["status"] == "complete"
        _assert_same_tables(tmp_path / "in_turn" / "quickstart" / model, folder)


def test_ctrl_c_of_a_jobs_run_stops_every_worker_after_its_period_and_resumes(
    straight, tiny, tmp_path, start
):
    """Ctrl-C reaches the parent (here alone): it asks its workers to stop, each writes what
    is complete; the scenario folder resumes, with the tables of an uninterrupted run."""
    child = start(tiny, tmp_path, "--model", "hybrid", "--jobs", "2")
    scenario = tmp_path / "quickstart"
    _wait_for_chunk(scenario / MODEL, child)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130 and "Traceback" not in err, err
    assert err.splitlines()[-1].endswith(f"resume with: market-sim run --resume {scenario}")
    statuses = {m: _info(scenario / m)["status"] for m in (MODEL, "hybrid")}
    assert "interrupted" in statuses.values() and "running" not in statuses.values()

    assert main(["run", "--resume", str(scenario), "--no-progress", "--jobs", "2"]) == 0
    assert all(_info(scenario / m)["status"] == "complete" for m in (MODEL, "hybrid"))
    _assert_same_tables(straight, scenario / MODEL)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", str(QUICKSTART), "--chunk-days", "0"], "--chunk-days: got 0.0; allowed:"),
        (["run", "--resume", "nowhere"], "--resume: got 'nowhere'; allowed: a run folder"),
        (["run", str(QUICKSTART), "--resume", "x"], "--resume: got CONFIG too; allowed:"),
        (["run", "--resume", "x", "--overwrite"], "--resume: got --overwrite too; allowed:"),
        (["run"], "run: missing CONFIG; allowed: a scenario YAML, or --resume RUN_DIR"),
        (["run", str(QUICKSTART), "--jobs", "0"], "--jobs: got 0; allowed: a whole number >= 1"),
    ],
)
def test_bad_run_options_are_one_line_and_exit_2(argv, expected, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)] if "--resume" not in argv else argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err
