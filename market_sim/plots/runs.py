"""A run folder as the plots read it: its tables, its config and a label for legends.

The plots take tables (DataFrames), so a notebook can plot a model it has just run without
writing it; :func:`load_run` is the one place that turns a run folder into that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from market_sim.config import ScenarioConfig, load_config
from market_sim.results import load_results


@dataclass(frozen=True)
class Run:
    """One finished run: ``label`` names it in legends (its coordination model)."""

    label: str
    tables: dict[str, pd.DataFrame]
    config: ScenarioConfig
    folder: Path | None = None

    @property
    def period_h(self) -> float:
        return self.config.period_minutes / 60

    def period_start(self, periods: pd.Series | list[int]) -> pd.DatetimeIndex:
        """Start time of each period: the x axis of time series."""
        minutes = pd.to_timedelta(
            pd.Index(periods, dtype="int64") * self.config.period_minutes, "m"
        )
        return pd.Timestamp(self.config.start) + minutes


def load_run(folder: str | Path) -> Run:
    """The tables and the resolved config of a run folder (``market-sim run`` wrote it)."""
    folder = Path(folder)
    tables = load_results(folder)
    config = load_config(folder / "config.yaml")
    return Run(config.models[0], tables, config, folder)


def as_runs(runs: Run | str | Path | list[Run | str | Path]) -> list[Run]:
    """Runs, run folders or a list of either, as a list of runs with distinct labels."""
    items = runs if isinstance(runs, list | tuple) else [runs]
    loaded = [r if isinstance(r, Run) else load_run(r) for r in items]
    labels = [r.label for r in loaded]
    if len(set(labels)) < len(labels):  # the same model twice: name them by their folders
        loaded = [
            Run(f"{r.label} ({r.folder or i})", r.tables, r.config, r.folder)
            for i, r in enumerate(loaded)
        ]
    return loaded
