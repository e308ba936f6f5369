"""Run a scenario under one or several coordination models and write one folder per run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from market_sim.config import dump_config
from market_sim.kpis import links, summary
from market_sim.model import MarketModel
from market_sim.results import write_run, write_summary
from market_sim.scenario import Scenario

log = logging.getLogger(__name__)


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


def run_scenario(
    scenario: Scenario,
    out: Path,
    models: list[str] | None = None,
    days: int | None = None,
    progress: bool = True,
    check: bool = False,
) -> list[RunReport]:
    """Run each model of the scenario (networks loaded once, shared); write a folder per run.

    ``check``: check the invariants after every period (each violation an error and an
    ``invariant_violated`` event, counted in the report).
    """
    config = scenario.config
    models = models or list(config.models)
    periods = config.for_model(models[0], days).n_periods
    reports = []
    with tqdm(total=periods * len(models), unit="period", disable=not progress) as bar:
        for name in models:
            run_config = config.for_model(name, days)
            bar.set_description(name)
            started = time.perf_counter()
            sim = MarketModel(run_config, scenario.networks, scenario.transmission, check=check)
            sim.run(progress=lambda: bar.update(1))
            wall = time.perf_counter() - started
            tables = sim.tables()
            folder = out / run_config.name / name
            info = {
                "model": name,
                "seed": run_config.seed,
                "periods": run_config.n_periods,
                "wall_time_s": round(wall, 3),
            }
            write_run(folder, dump_config(run_config), info, tables)
            events = tables["events"]
            report = RunReport(
                name,
                folder,
                summary(tables, sim.period_h),
                links(tables["messages"]),
                len(events),
                wall,
                int((events.kind == "invariant_violated").sum()),
            )
            write_summary(folder, report.summary, report.links)
            reports.append(report)
    return reports


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
