"""Run a scenario under one or several coordination models and write one folder per run.

A run is written as it is made: every chunk of periods (``chunk_days``, a day by default)
its tables and state go to disk (:mod:`market_sim.run_folder`), so memory stays flat over a
year, a killed run is resumed from its last chunk, and Ctrl-C finishes the period, writes what
is complete and stops. The summary is computed from the tables on disk.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from market_sim import processes
from market_sim.chunk_writer import Chunk, ChunkWriter
from market_sim.config import ScenarioConfig, dump_config, load_config
from market_sim.kpis import links, summary
from market_sim.model import MarketModel
from market_sim.progress import Progress
from market_sim.results import package_versions, read_table, write_summary
from market_sim.run_folder import (
    Checkpoint,
    ModelFolder,
    RunLock,
    check_new_run,
    clear_earlier_run,
)
from market_sim.run_state import RunState
from market_sim.scenario import Scenario

log = logging.getLogger(__name__)

#: allocations between young collections during a run's loop (Python's default: 700)
_LOOP_GC_THRESHOLD = 10_000


@dataclass(frozen=True)
class RunReport:
    """What a finished run reports: its folder, its summary, its data per link."""

    model: str
    folder: Path
    summary: dict[str, float]
    links: pd.DataFrame
    events: int
    wall_time_s: float
    invariant_violations: int = 0


class Interrupted(Exception):
    """Ctrl-C: the run stopped after writing every complete period; its message says how to
    resume it."""

    def __init__(self, folder: Path, period: int | None, periods: int) -> None:
        done = "no period" if period is None else f"period {period} of {periods}"
        super().__init__(f"interrupted after {done}; resume with: market-sim run --resume {folder}")
        self.folder = folder


@dataclass
class _Stop:
    """Whether the run was asked to stop: by Ctrl-C in this process, or (``shared``, a
    multiprocessing Event) by the parent process of ``--jobs`` runs."""

    asked: bool = False
    shared: Any = None

    @property
    def requested(self) -> bool:
        return self.asked or (self.shared is not None and self.shared.is_set())


@contextlib.contextmanager
def _stop_on_ctrl_c(shared: Any = None, handle_signal: bool = True) -> Iterator[_Stop]:
    """The first Ctrl-C asks the run to stop after the current period (a period cut in the
    middle would be lost anyway), and sets ``shared`` so that worker processes stop too; a
    second one stops it at once. ``handle_signal=False``: only ``shared`` stops it."""
    stop = _Stop(shared=shared)
    if not handle_signal or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.asked:
            raise KeyboardInterrupt
        stop.asked = True
        if shared is not None:
            shared.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def run_scenario(
    scenario: Scenario,
    out: Path,
    models: list[str] | None = None,
    days: int | None = None,
    progress: bool = True,
    check: bool = False,
    overwrite: bool = False,
    jobs: int = 1,
    source: str = "config",
) -> list[RunReport]:
    """Run each model of the scenario (networks loaded once, shared); write a folder per run
    into ``out/<scenario>/``, which must not hold an earlier run unless ``overwrite``.

    ``check``: check the invariants after every period (each violation an error and an
    ``invariant_violated`` event, counted in the report). ``jobs``: run the models in that
    many processes, each loading the networks once (``source``: the config's file, for its
    messages).
    """
    folder = out / scenario.config.name
    with RunLock(folder):
        check_new_run(folder, overwrite)
        if overwrite:
            clear_earlier_run(folder)
        runs = _new_runs(scenario.config, folder, models, days)
        return _run_all(scenario, runs, progress, check, jobs, source)


def run_models(
    scenario: Scenario,
    folder: Path,
    models: list[str] | None = None,
    days: int | None = None,
    progress: bool = True,
    check: bool = False,
) -> list[RunReport]:
    """Run each model into its folder of the scenario folder ``folder``, whose lock the caller
    holds and which it has checked for earlier runs (:func:`run_scenario` does both; compare's
    processes run one model each under their parent's lock)."""
    return _run_all(scenario, _new_runs(scenario.config, folder, models, days), progress, check)


def _new_runs(
    config: ScenarioConfig, folder: Path, models: list[str] | None, days: int | None
) -> list[tuple[ScenarioConfig, ModelFolder]]:
    """A new folder for each model's run, its config and ``run.json`` written."""
    runs = []
    for name in models or list(config.models):
        run_config = config.for_model(name, days)
        model_folder = ModelFolder(folder / name)
        info = {
            "model": name,
            "seed": run_config.seed,
            "periods": run_config.n_periods,
            "chunk_periods": run_config.chunk_periods,
            "packages": package_versions(),
            "wall_time_s": 0.0,
        }
        model_folder.create(dump_config(run_config), info)
        runs.append((run_config, model_folder))
    return runs


def resume_scenario(
    scenario: Scenario,
    folders: list[Path],
    progress: bool = True,
    check: bool = False,
    jobs: int = 1,
    source: str = "config",
) -> list[RunReport]:
    """Go on with the runs of ``folders`` (model folders of one scenario folder) from their
    last complete chunk, each with the config it was started with; complete ones are only
    reported. ``jobs``, ``source``: as for :func:`run_scenario`."""
    runs = [(load_config(f / "config.yaml"), ModelFolder(f)) for f in folders]
    with RunLock(folders[0].parent):
        return _run_all(scenario, runs, progress, check, jobs, source)


#: A run still to do: its config, its folder, and the checkpoint it starts from.
_Todo = tuple[ScenarioConfig, ModelFolder, Checkpoint]


def _run_all(
    scenario: Scenario,
    runs: list[tuple[ScenarioConfig, ModelFolder]],
    progress: bool,
    check: bool,
    jobs: int = 1,
    source: str = "config",
) -> list[RunReport]:
    """Run (or go on with) each run, in turn or (``jobs`` > 1) in that many processes, one
    progress count over all of them. Stopped, the scenario folder (or the one model's folder)
    is what to resume."""
    resume_at = runs[0][1].path if len(runs) == 1 else runs[0][1].path.parent
    todo = [(c, f, f.checkpoint()) for c, f in runs if f.info()["status"] != "complete"]
    left = sum(c.n_periods - _first_period(cp) for c, _, cp in todo)
    parallel = jobs > 1 and len(todo) > 1
    shared = multiprocessing.get_context("spawn").Event() if parallel else None
    with _stop_on_ctrl_c(shared) as stop, Progress(left, progress) as bar:
        if parallel:
            stopped = _run_in_processes(scenario.config, source, todo, jobs, bar, shared, check)
        else:
            stopped = _run_in_turn(scenario, todo, bar, stop, check)
    if stopped is not None:
        info = stopped.info()
        raise Interrupted(resume_at, info["last_completed_period"], info["periods"])
    return [_report(f.path, c) for c, f in runs]


def _run_in_turn(
    scenario: Scenario, todo: list[_Todo], bar: Progress, stop: _Stop, check: bool
) -> ModelFolder | None:
    """Each run after the other in this process; the folder of the one stopped, if any."""
    for config, folder, checkpoint in todo:
        bar.describe(config.models[0])
        try:
            _run_model(scenario, config, folder, checkpoint, bar, stop, check)
        except (Interrupted, KeyboardInterrupt):
            return folder
    return None


def _run_in_processes(
    config: ScenarioConfig,
    source: str,
    todo: list[_Todo],
    jobs: int,
    bar: Progress,
    shared: Any,
    check: bool,
) -> ModelFolder | None:
    """Each run in one of ``jobs`` processes (:func:`market_sim.processes.in_processes`), the
    bar counting the periods their folders report written; the folder of the first run
    stopped, if any."""
    bar.describe(f"{len(todo)} models in {min(jobs, len(todo))} processes")
    written = {f.path: _written(f) for _, f, _ in todo}

    def count_written() -> None:
        for _, folder, _ in todo:
            now = _written(folder)
            for _ in range(now - written[folder.path]):
                bar.update()
            written[folder.path] = max(now, written[folder.path])

    tasks = [(_run_in_worker, (c, f.path, check)) for c, f, _ in todo]
    try:
        statuses = processes.in_processes(config, source, jobs, tasks, shared, count_written)
    except KeyboardInterrupt:  # a second Ctrl-C: the workers stop after their period
        statuses = [f.info()["status"] for _, f, _ in todo]
    return next((f for (_, f, _), s in zip(todo, statuses, strict=True) if s != "complete"), None)


def _written(folder: ModelFolder) -> int:
    last = folder.info()["last_completed_period"]
    return 0 if last is None else last + 1


def _run_in_worker(config: ScenarioConfig, folder: Path, check: bool) -> str:
    """One run in a worker process; its folder's status at the end (``interrupted`` when the
    parent asked it to stop)."""
    run_folder = ModelFolder(folder)
    todo = [(config, run_folder, run_folder.checkpoint())]
    stop_event = processes.shared_stop()
    with _stop_on_ctrl_c(stop_event, handle_signal=False) as stop, Progress(0, False) as bar:
        _run_in_turn(processes.worker_scenario(), todo, bar, stop, check)
    return run_folder.info()["status"]


def _first_period(checkpoint: Checkpoint) -> int:
    return 0 if checkpoint.state is None else RunState.from_bytes(checkpoint.state).period


def _run_model(
    scenario: Scenario,
    config: ScenarioConfig,
    folder: ModelFolder,
    checkpoint: Checkpoint,
    bar: Progress,
    stop: _Stop,
    check: bool,
) -> None:
    """Run one model chunk by chunk, each chunk's tables and state written as it ends."""
    state = None if checkpoint.state is None else RunState.from_bytes(checkpoint.state)
    chunk = config.chunk_periods
    wall_before, started = folder.info().get("wall_time_s", 0.0), time.perf_counter()
    index = checkpoint.next_chunk
    folder.update(status="running", error=None)  # a failed run resumed may now succeed
    thresholds = gc.get_threshold()
    if state is not None:
        log.info("%s: resuming at period %d", config.models[0], state.period)
    try:
        sim = MarketModel(
            config, scenario.networks, scenario.transmission, state, chunk, check=check
        )
        # the networks, agents and solver models (some 350,000 objects) live as long as the
        # run: kept out of the collector's full collections, which scanned them all every few
        # dozen periods (0.2 s each, 4 ms a period); handed back to it when the run ends.
        # Young collections every 10,000 allocations instead of 700: the loop's objects are
        # short-lived, and one quickstart day of tso_managed ran 143 collections (38 ms)
        # at the default, 4 (7 ms) at this threshold
        gc.collect()
        gc.freeze()
        gc.set_threshold(_LOOP_GC_THRESHOLD, *thresholds[1:])
        with ChunkWriter(folder, config.models[0], config.n_periods) as writer:
            while sim.period < config.n_periods and not stop.requested:
                first, end = sim.period, min(config.n_periods, (sim.period // chunk + 1) * chunk)
                while sim.period < end and not stop.requested:
                    sim.step()
                    bar.update()
                if sim.period == first:
                    break
                # stopped inside a chunk, its tables are written for reading, not its state:
                # a resumed run redoes the chunk from its start, with the solvers' warm starts
                # of the uninterrupted run, so that its tables are the same bit for bit
                state = sim.state.to_bytes() if sim.period == end else None
                wall = round(wall_before + time.perf_counter() - started, 3)
                writer.write(Chunk(index, sim.take_tables(), state, first, sim.period - 1, wall))
                index += 1
        if stop.requested:
            raise Interrupted(folder.path, sim.period - 1, config.n_periods)
    except (Interrupted, KeyboardInterrupt):
        folder.update(status="interrupted")
        raise
    except Exception as error:
        try:
            folder.update(status="failed", error=f"{type(error).__name__}: {error}")
        except OSError as also:  # a full disk fails this too: the run's own error stands
            log.error("%s: could not mark the run failed: %s", folder.path, also)
        raise
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    folder.update(
        status="complete", wall_time_s=round(wall_before + time.perf_counter() - started, 3)
    )


def _report(folder: Path, config: ScenarioConfig) -> RunReport:
    """The run's report from its tables on disk (the whole run, however long: only the
    columns the summary reads)."""
    needed = {
        "kpis": ["period", "name", "value"],
        "timings": ["role", "seconds"],
        "grid": ["dso"],
        "clearing_runs": ["n_constraints"],
    }
    tables = {name: read_table(folder, name, columns) for name, columns in needed.items()}
    columns = ["sender", "receiver", "sender_role", "receiver_role", "bytes"]
    events = read_table(folder, "events", ["kind"])
    info = ModelFolder(folder).info()
    report = RunReport(
        config.models[0],
        folder,
        summary(tables, config.period_minutes / 60),
        links(read_table(folder, "messages", columns)),
        len(events),
        info["wall_time_s"],
        int((events.kind == "invariant_violated").sum()),
    )
    write_summary(folder, report.summary, report.links)
    return report


def check_line(reports: list[RunReport]) -> str:
    """One line on the invariants of checked runs: "" if none was violated."""
    violated = {r.model: r.invariant_violations for r in reports if r.invariant_violations}
    if not violated:
        return ""
    per_model = ", ".join(f"{m}: {n}" for m, n in violated.items())
    return (
        f"{sum(violated.values())} invariant violations ({per_model}); "
        "see the invariant_violated rows of the events tables"
    )


def side_by_side(reports: list[RunReport]) -> str:
    """The runs' summaries as one text table, models as columns, then data per link."""
    table = pd.DataFrame({r.model: r.summary for r in reports})
    table.loc["events"] = [r.events for r in reports]
    table.loc["wall time (s)"] = [r.wall_time_s for r in reports]
    text = table.map(_number).to_string()
    per_link = pd.concat(
        [r.links.assign(model=r.model) for r in reports], ignore_index=True
    ).pivot_table(index="link", columns="model", values=["messages", "bytes"], fill_value=0)
    per_link = per_link.reindex(columns=[r.model for r in reports], level=1)
    folders = "\n".join(f"  {r.model}: {r.folder}" for r in reports)
    return f"{text}\n\nmessages and bytes per link:\n{per_link.to_string()}\n\nresults:\n{folders}"


def _number(value: float) -> str:
    """A summary figure: whole numbers (counts, zeros) as integers, others to 0.1, large ones
    (>= 1e6) to 1."""
    if value == 0:
        return "0"  # also -0.0
    if float(value).is_integer() or abs(value) >= 1e6:
        return f"{value:,.0f}"
    return f"{value:,.1f}"
