"""A run's report: the figures as PNG files and a ``report.md`` that embeds them.

``market-sim report RUN_DIR [RUN_DIR ...]`` and ``market-sim run ... --report`` write it. The
summary table is :func:`market_sim.kpis.summary` of each run, the table ``market-sim run``
prints; the figures are the KPI series of all runs overlaid, the models' bars, and for one
period (``--period``; default: the period in which the first run dispatched the most DER) each
run's message sequence, merit order and networks after delivery.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from market_sim.config import ConfigError
from market_sim.plots.bars import DEFAULT_ROWS, model_bars, summary_table
from market_sim.plots.merit_order import merit_order
from market_sim.plots.network import network_at
from market_sim.plots.runs import Run, as_runs
from market_sim.plots.sequence import message_sequence
from market_sim.plots.series import kpi_series
from market_sim.results import markdown_table

log = logging.getLogger(__name__)
DPI = 100


class ReportInputError(ValueError):
    """A report that cannot be written from its inputs: names the input, the value, what is
    allowed."""


def default_out(run_dirs: list[Path]) -> Path:
    """``report/`` beside the run folders (``results/<scenario>/report`` for a scenario's)."""
    parents = [str(Path(d).resolve().parent) for d in run_dirs]
    return Path(os.path.commonpath(parents)) / "report"


def load_report_runs(run_dirs: list[Path]) -> list[Run]:
    """The runs of ``run_dirs``; a folder that is not a run folder is a ReportInputError."""
    for d in run_dirs:
        if not (Path(d) / "config.yaml").is_file():
            raise ReportInputError(
                f"RUN_DIR: got '{d}'; allowed: a folder written by market-sim run"
            )
    try:
        return as_runs(list(run_dirs))
    except (FileNotFoundError, ConfigError) as error:
        raise ReportInputError(f"RUN_DIR: {error}") from None


def report_period(runs: list[Run], period: int | None) -> int:
    """``period`` if every run has it, else a ReportInputError; None: the first run's period
    with the most DER energy dispatched (the first period if none was)."""
    common = set.intersection(*(set(r.tables["kpis"].period) for r in runs))
    if period is None:
        kpis = runs[0].tables["kpis"]
        der = kpis[kpis.name.isin(["der_dispatched_up_mwh", "der_dispatched_down_mwh"])]
        per_period = der[der.period.isin(common)].groupby("period").value.sum()
        return int(per_period.idxmax()) if len(per_period) else min(common, default=0)
    if period not in common:
        span = f"{min(common)}..{max(common)}" if common else "none"
        raise ReportInputError(f"--period: got {period}; allowed: a period of every run ({span})")
    return period


def write_report(run_dirs: list[Path], out: Path | None = None, period: int | None = None) -> Path:
    """Write the figures and ``report.md`` of ``run_dirs`` into ``out``; returns report.md."""
    runs = load_report_runs(run_dirs)
    chosen = "chosen" if period is not None else f"the most DER dispatched in {runs[0].label}"
    period = report_period(runs, period)
    out = Path(out) if out is not None else default_out(run_dirs)
    out.mkdir(parents=True, exist_ok=True)
    summaries = summary_table(runs)
    shown = [r for r in DEFAULT_ROWS if r in summaries.index]
    scenarios = ", ".join(dict.fromkeys(r.config.name for r in runs))
    lines = [f"# Report: {scenarios}", "", _runs_table(runs), ""]
    lines += ["## Summary", "", _markdown(summaries), ""]
    lines += ["## KPIs over the run", "", _save(kpi_series(runs), out, "kpi_series"), ""]
    lines += ["## The models compared", "", _save(model_bars(summaries, shown), out, "models"), ""]
    start = runs[0].period_start([period])[0]
    lines += [f"## Period {period}", "", f"Starting {start:%Y-%m-%d %H:%M} ({chosen}).", ""]
    for run in runs:
        lines += [f"### {run.label}", "", *_period_figures(run, period, out)]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    log.debug("report written to %s", path)
    return path


def _period_figures(run: Run, period: int, out: Path) -> list[str]:
    """Markdown lines embedding ``run``'s figures of ``period``."""
    name, label = _slug(run.label), run.label
    sequence = message_sequence(
        run.tables["messages"], period, f"{label}: messages of period {period}"
    )
    market = merit_order(run.tables, period, f"{label}: balancing market, period {period}")
    embedded = [_save(sequence, out, f"{name}_sequence"), _save(market, out, f"{name}_merit_order")]
    for dso in run.config.dsos:
        embedded.append(_save(network_at(run, dso.name, period), out, f"{name}_network_{dso.name}"))
    return [line for image in embedded for line in (image, "")]


def _save(fig: Figure, out: Path, stem: str) -> str:
    """Save ``fig`` as ``out/stem.png``; the markdown that embeds it."""
    fig.savefig(out / f"{stem}.png", dpi=DPI)
    return f"![{stem}]({stem}.png)"


def _runs_table(runs: list[Run]) -> str:
    rows = pd.DataFrame(
        {
            "run": [r.label for r in runs],
            "folder": [str(r.folder) for r in runs],
            "periods": [r.tables["kpis"].period.nunique() for r in runs],
            "seed": [r.config.seed for r in runs],
        }
    ).set_index("run")
    return _markdown(rows)


def _markdown(table: pd.DataFrame) -> str:
    """A DataFrame as a markdown table; a summary part ("  schedule (EUR)") stays indented."""
    indent = table.index.map(lambda label: "&emsp;" * ((len(label) - len(label.lstrip())) // 2))
    labelled = table.set_axis(indent + table.index.str.strip())
    return markdown_table(labelled).rstrip("\n")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
