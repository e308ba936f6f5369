"""Running a sweep's runs on Dask distributed and gathering their KPIs in one tidy table.

Each run is one Dask task that runs one config (:func:`market_sim.runner.run_scenario`) into
its own folder ``OUT/runs/<run id>/`` and seals it with ``sweep_run.json`` (its status, its
error if it failed, its KPI totals). The driver only submits and gathers: results never travel
through the scheduler as tables, and a rerun skips every run whose folder is sealed complete,
so a sweep interrupted (or with failed runs) is continued by running the same command again.
A run that raises is a failed run, reported with its error; the others go on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from market_sim.config import ScenarioConfig
from market_sim.grid.disk_cache import atomic_write
from market_sim.logs import quiet_third_party
from market_sim.results import load_results
from market_sim.runner import run_scenario
from market_sim.scenario import Scenario, check_data, load_networks
from market_sim.sweep.spec import Sweep, SweepRun
from market_sim.tables import KPIS, SWEEP_COLUMNS

log = logging.getLogger(__name__)

MARKER = "sweep_run.json"
#: Distinct network sets a worker process keeps loaded (a DER-scale sweep loads one per scale).
_KEEP_NETWORKS = 4
_loaded: OrderedDict[str, Scenario] = OrderedDict()
#: One run at a time per process: pyomo's HiGHS interface redirects the process's stdout and
#: stderr file descriptors while it loads a model, and two runs in threads of one worker
#: collided there (a RuntimeError in one, a deadlock in the other). It also lets the runs of a
#: process share their networks, which a model writes into while it runs.
_one_run_at_a_time = threading.Lock()


def network_key(config: ScenarioConfig) -> str:
    """The part of a config its networks depend on (what :func:`load_networks` reads)."""
    names = ("name", "simbench_code", "pv_scale", "storage_scale", "load_scale")
    dsos = [{k: getattr(d, k) for k in names} for d in config.dsos]
    transmission = config.transmission.model_dump(mode="json")
    return json.dumps({"transmission": transmission, "dsos": dsos}, sort_keys=True)


def _scenario(config: ScenarioConfig) -> Scenario:
    """The run's scenario, its networks loaded once per worker process and network key
    (called under :data:`_one_run_at_a_time`)."""
    key = network_key(config)
    cached = _loaded.get(key)
    if cached is None:
        cached = Scenario(config, load_networks(config), check_data(config))
        _loaded[key] = cached
        while len(_loaded) > _KEEP_NETWORKS:
            _loaded.popitem(last=False)
    _loaded.move_to_end(key)
    return Scenario(config, cached.networks, cached.transmission)


def kpi_totals(kpis: pd.DataFrame, period_h: float) -> list[dict[str, Any]]:
    """A run's KPIs over all its periods: sums (NaN periods skipped, as in the run summary);
    MW KPIs times the period length, in MWh. In the order of :data:`KPIS`."""
    total = kpis.groupby("name", sort=False)["value"].sum()
    rows = []
    for name, (unit, _) in KPIS.items():
        if name not in total.index:
            continue
        value = float(total[name])
        if unit == "MW":
            value, unit = value * period_h, "MWh"
        rows.append({"kpi": name, "value": value, "unit": unit})
    return rows


def execute_run(run: SweepRun, folder: str) -> dict[str, Any]:
    """One run, on a worker: simulate, seal its folder, return its record (never raises)."""
    quiet_third_party()  # a worker process has not run the command line's set-up
    path = Path(folder)
    shutil.rmtree(path, ignore_errors=True)  # what an unfinished earlier attempt left
    path.mkdir(parents=True)
    started = time.perf_counter()
    record: dict[str, Any] = {"run_id": run.run_id, "values": run.values}
    try:
        config = run.config
        with _one_run_at_a_time:
            (report,) = run_scenario(_scenario(config), path, progress=False)
        kpis = load_results(report.folder)["kpis"]
        record |= {"status": "complete", "error": "", "folder": str(report.folder)}
        record["kpis"] = kpi_totals(kpis, config.period_minutes / 60)
    except Exception as error:  # a failed run is reported; the sweep goes on
        log.error("run %s failed: %s", run.run_id, error)
        (path / "error.txt").write_text(traceback.format_exc())
        record |= {"status": "failed", "error": f"{type(error).__name__}: {error}", "kpis": []}
    record["wall_time_s"] = round(time.perf_counter() - started, 3)
    text = json.dumps(record, indent=1, default=str).encode()
    atomic_write(path / MARKER, lambda fh: fh.write(text))
    return record


def completed(folder: Path) -> dict[str, Any] | None:
    """The record of a run sealed complete in ``folder``, else None (absent or failed)."""
    try:
        record = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("status") == "complete" else None


@dataclass
class SweepResult:
    """What a sweep did: the table, the runs it ran, skipped (already complete) and failed."""

    table: pd.DataFrame
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@contextmanager
def _client(scheduler: str | None, workers: int | None, processes: bool) -> Iterator[Any]:
    """A Dask client: of the cluster at ``scheduler``, or of a LocalCluster we start and stop."""
    from distributed import Client, LocalCluster

    from market_sim.sweep.quiet_worker import QuietWorker

    quiet_third_party()  # distributed sets its loggers' levels when imported

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    # One thread per worker: a process runs one run at a time anyway (_one_run_at_a_time).
    with (
        LocalCluster(
            n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(QuietWorker(), name="market-sim-quiet-worker")
        yield client


def run_sweep(
    sweep: Sweep,
    out: Path,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
) -> SweepResult:
    """Run every run of ``sweep`` not complete in ``out``; write sweep.parquet and sweep.csv."""
    for config in {network_key(r.config): r.config for r in sweep.runs}.values():
        check_data(config, str(sweep.source))  # a bad code or bus: exit 2 before any run
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for run in sweep.runs:
        done = completed(out / "runs" / run.run_id)
        if done is not None:
            records[run.run_id] = done
        else:
            todo.append(run)
    result = SweepResult(pd.DataFrame(), skipped=list(records))
    log.info("sweep: %d runs, %d already complete", len(sweep.runs), len(records))
    if todo:
        with _client(scheduler, workers, processes) as client:
            records |= _gather(client, todo, out, result)
    result.table = sweep_table(sweep, records)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "sweep.parquet", lambda fh: result.table.to_parquet(fh, index=False))
    atomic_write(out / "sweep.csv", lambda fh: result.table.to_csv(fh, index=False))
    return result


def _gather(client: Any, todo: list[SweepRun], out: Path, result: SweepResult) -> dict:
    from distributed import as_completed

    futures = {
        client.submit(
            execute_run, run, str(out / "runs" / run.run_id), key=f"run-{run.run_id}", pure=False
        ): run
        for run in todo
    }
    records = {}
    for future in as_completed(futures):
        run = futures[future]
        try:
            record = future.result()
        except Exception as error:  # the worker itself died (memory, a crash in C code)
            record = {
                "run_id": run.run_id,
                "values": run.values,
                "status": "failed",
                "error": f"{type(error).__name__}: {error}",
                "kpis": [],
            }
        records[run.run_id] = record
        result.ran.append(run.run_id)
        if record["status"] != "complete":
            result.failed[run.run_id] = record["error"]
        log.info("run %s %s (%d of %d)", run.run_id, record["status"], len(records), len(todo))
    return records


def sweep_table(sweep: Sweep, records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per run and KPI (one row with no KPI for a failed run), in grid order."""
    rows = []
    for run in sweep.runs:
        record = records[run.run_id]
        head = {
            "run_id": run.run_id,
            **run.values,
            "status": record["status"],
            "error": record["error"],
        }
        kpis = record["kpis"] or [{"kpi": None, "value": float("nan"), "unit": None}]
        rows += [{**head, **k} for k in kpis]
    table = pd.DataFrame(rows)
    for name in sweep.fields:  # one type per column, for parquet
        if table[name].map(type).nunique() > 1:
            table[name] = table[name].astype(str)
    fixed = list(SWEEP_COLUMNS)
    columns = [fixed[0], *sweep.fields, *fixed[1:]]
    return table[columns].astype({c: t for c, (t, _) in SWEEP_COLUMNS.items()})


def sweep_line(result: SweepResult, out: Path) -> str:
    """What the CLI prints: counts, the failed runs with their errors, where the table is."""
    lines = [
        f"sweep: {len(result.ran)} runs ran, {len(result.skipped)} skipped (complete before), "
        f"{len(result.failed)} failed; table: {out / 'sweep.parquet'} (and sweep.csv)"
    ]
    lines += [f"  failed {rid}: {error}" for rid, error in result.failed.items()]
    return "\n".join(lines)
