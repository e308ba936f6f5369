"""``market-sim compare``: every coordination model on one scenario, and Table I measured.

Runs each model (and the chosen variants) on the same scenario and seed in parallel processes
(each loads the networks once and writes its run folder as ``market-sim run`` does, through
:func:`market_sim.runner.run_scenario`), then reduces every run to its measures (one row per
model) and judges the paper's claims on them (:mod:`market_sim.table_one`). The comparison
folder holds ``comparison.md``, ``comparison.csv`` (one row per claim), ``measures.csv`` (every
measure per model) and one bar chart per measure.

The processes are :func:`market_sim.processes.in_processes`'s, as for ``market-sim run --jobs``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from market_sim.config import ConfigError, ScenarioConfig
from market_sim.kpis import VIOLATION_KPIS, links
from market_sim.plots.bars import model_bars
from market_sim.processes import in_processes, worker_scenario
from market_sim.registry import COORDINATION_MODELS
from market_sim.results import load_results, markdown_table
from market_sim.run_folder import RunLock, check_new_run, clear_earlier_run
from market_sim.runner import RunReport, run_models
from market_sim.table_one import CLAIMS, verdicts
from market_sim.tables import COMPARISON_MEASURES, KPIS
from market_sim.verdict_rules import CORE, VERDICTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """A finished comparison: its folder, the runs, the measures and the verdicts."""

    folder: Path
    reports: list[RunReport]
    measures: pd.DataFrame  # index model, one column per measure
    table: pd.DataFrame  # the measured Table I, one row per claim


def compared_models(variants: list[str]) -> list[str]:
    """Every core model of the registry, then the variants that set the chosen options
    (``pre_validation`` -> ``hybrid+pre_validation``); a ConfigError names an unknown one."""
    try:
        chosen = COORDINATION_MODELS.with_options(variants)
    except ValueError as error:
        raise ConfigError(f"--variants: {error}") from None
    core = [n for n in COORDINATION_MODELS.names if n not in COORDINATION_MODELS.variants]
    return core + list(chosen)


def compare(
    config: ScenarioConfig,
    source: str,
    models: list[str],
    out: Path,
    days: int | None = None,
    overwrite: bool = False,
) -> Comparison:
    """Run ``models`` on ``config`` in parallel processes, then write the comparison folder
    ``out/<scenario name>/comparison``. The scenario folder must hold no earlier run unless
    ``overwrite``; this process holds its lock while the workers write into it."""
    workers = min(len(models), os.cpu_count() or 1)
    log.info("comparing %s in %d processes", ", ".join(models), workers)
    scenario_folder = out / config.name
    with RunLock(scenario_folder):
        check_new_run(scenario_folder, overwrite)
        if overwrite:
            clear_earlier_run(scenario_folder)
        tasks = [(_run_one, (m, scenario_folder, days)) for m in models]
        done = in_processes(config, source, workers, tasks)
    reports = [report for report, _ in done]
    measures = pd.DataFrame({r.model: m for r, m in done}).T.rename_axis("model")
    # a link a model never uses carried no message: a measured 0, not an unknown
    per_link = [c for c in measures.columns if c.startswith(("messages: ", "bytes: "))]
    measures[per_link] = measures[per_link].fillna(0.0)
    table = verdicts(measures)
    folder = out / config.name / "comparison"
    write_comparison(folder, measures, table)
    return Comparison(folder, reports, measures, table)


def _run_one(model: str, folder: Path, days: int | None) -> tuple[RunReport, dict[str, float]]:
    """One model's run, in a worker process, into the scenario folder (whose lock the parent
    holds) and its measures."""
    scenario = worker_scenario()
    (report,) = run_models(scenario, folder, [model], days, progress=False)
    hours = scenario.config.period_minutes / 60
    return report, run_measures(load_results(report.folder), hours)


def run_measures(tables: dict[str, pd.DataFrame], hours: float) -> dict[str, float]:
    """A run's measures (:data:`market_sim.tables.COMPARISON_MEASURES`): every KPI of the
    ``kpis`` table over the run (MW ones averaged over periods, the others summed), compute
    time per operator, and messages and bytes per link. ``hours``: length of a period."""
    kpis = tables["kpis"]
    per_period = kpis.pivot_table(index="period", columns="name", values="value", sort=False)
    units = kpis.groupby("name").unit.first()
    # NaN in any period (a failed clearing's unserved energy, a failed what-if) makes the
    # run's figure NaN: unknown, so the claims reading it are not measurable, not judged on 0
    out = {
        name: float(
            per_period[name].mean(skipna=False)
            if units[name] == "MW"
            else per_period[name].sum(skipna=False)
        )
        for name in per_period.columns
    }
    out["violations_after_delivery"] = sum(out.get(k, float("nan")) for k in VIOLATION_KPIS)
    timings = tables["timings"].groupby("role").seconds.sum()
    dsos = sorted(set(tables["grid"].dso))
    per_dso = [float(timings.get(d, 0.0)) for d in dsos]
    out["tso_compute_s"] = float(timings.get("tso", 0.0))
    out["dso_compute_s_per_dso"] = sum(per_dso) / len(per_dso) if per_dso else 0.0
    out["largest_operator_compute_s"] = max([out["tso_compute_s"], *per_dso])
    out["tso_constraints_mean"] = float(tables["clearing_runs"].n_constraints.mean())
    out |= message_measures(tables["messages"])
    missing = set(COMPARISON_MEASURES) - set(out)
    assert not missing, f"measures declared in market_sim.tables and not computed: {missing}"
    return out


def message_measures(messages: pd.DataFrame) -> dict[str, float]:
    """Steps of the message log, bytes between TSO and DSOs, on the TSO's links, of
    operational data, and messages and bytes per link (steps inside one agent excluded)."""
    external = messages[messages.sender != messages.receiver]
    roles = external[["sender_role", "receiver_role"]]
    tso_dso = roles.isin(["tso", "dso"]).all(axis=1) & (roles.nunique(axis=1) == 2)
    out = {
        "message_steps": float(messages.step.nunique()),
        "tso_dso_bytes": float(external.bytes[tso_dso].sum()),
        "tso_link_bytes": float(external.bytes[(roles == "tso").any(axis=1)].sum()),
        "operational_data_bytes": float(messages.bytes[messages.kind == "operational_data"].sum()),
    }
    for row in links(messages).itertuples():
        out[f"messages: {row.link}"] = float(row.messages)
        out[f"bytes: {row.link}"] = float(row.bytes)
    return out


def write_comparison(folder: Path, measures: pd.DataFrame, table: pd.DataFrame) -> None:
    """comparison.csv and .md (the measured Table I), measures.csv, one PNG per measure."""
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "comparison.csv", index=False)
    side_by_side = measures.T.rename_axis("measure")
    side_by_side.to_csv(folder / "measures.csv")
    figures = [bar_chart(folder, measures, c) for c in figure_measures(measures)]
    (folder / "comparison.md").write_text(comparison_markdown(measures, table, figures))


def comparison_markdown(measures: pd.DataFrame, table: pd.DataFrame, figures: list[str]) -> str:
    """The measured Table I as markdown: the claims with figures per model and verdicts, the
    verdict count, then every measure per model, then the figures' files."""
    shown = table.drop(columns=["side", "reason"]).set_index("id")
    shown["verdict"] = [f"**{v}**: {r}" for v, r in zip(table.verdict, table.reason, strict=True)]
    counts = table.verdict.value_counts()
    tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
    units = {
        **{k: u for k, (u, _) in KPIS.items()},
        **{k: u for k, (u, _) in COMPARISON_MEASURES.items()},
    }
    side = measures.T.rename_axis("measure")
    side.insert(
        0, "unit", [units.get(m, "bytes" if m.startswith("bytes") else "count") for m in side.index]
    )
    return (
        "# Table I, measured\n\n"
        f"Models: {', '.join(measures.index)}. Rules compare the core models "
        f"({', '.join(CORE)}); {len(CLAIMS)} rows: {tally}. Compute times are wall times, the "
        "only figures that differ between reruns (and with the machine's load).\n\n"
        f"{markdown_table(shown)}\n## Measures per model\n\n{markdown_table(side, ',.2f')}\n"
        "## Figures\n\n" + "".join(f"- `{f}`\n" for f in figures)
    )  # fmt: skip


#: Charted beside the measures the claims read: delivered volumes, withheld services per
#: direction and aging, when the runs have them.
CHARTED = (
    "der_delivered_up_mwh",
    "der_delivered_down_mwh",
    "withheld_up_mw",
    "withheld_down_mw",
    "aging_avoided_h",
    "trafo_loss_of_life_h",
    "messages",
    "message_bytes",
)


def figure_measures(measures: pd.DataFrame) -> list[str]:
    """The measures the claims read and :data:`CHARTED` (those present in the runs), then
    messages and bytes per link."""
    used = dict.fromkeys([*(c for claim in CLAIMS for c in claim.rule.columns), *CHARTED])
    per_link = [c for c in measures.columns if c.startswith(("bytes: ", "messages: "))]
    return [c for c in [*used, *per_link] if c in measures.columns]


def bar_chart(folder: Path, measures: pd.DataFrame, column: str) -> str:
    """One bar per model of one measure (:func:`market_sim.plots.bars.model_bars`), as a PNG
    in ``folder``; returns the file name."""
    unit = {**KPIS, **COMPARISON_MEASURES}.get(column, ("",))[0]
    label = f"{column} ({unit})" if unit else column
    figure = model_bars(measures[[column]].T.rename(index={column: label}))
    figure.set_size_inches(2.2 + 1.3 * len(measures), 3.4)  # room for the legend of one panel
    name = "fig_" + re.sub(r"[^A-Za-z0-9]+", "_", column).strip("_") + ".png"
    figure.savefig(folder / name, dpi=100)
    return name
