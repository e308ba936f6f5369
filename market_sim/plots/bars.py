"""The comparison of models as bars: one panel per KPI, one bar per model.

A plain function of a KPI table (index: KPI, columns: model), such as the runs' summaries side
by side (:func:`summary_table`), so that any comparison (``compare``, a sweep) can draw it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from market_sim.kpis import summary
from market_sim.plots.runs import Run

#: Summary rows the report compares by default (labels of :func:`market_sim.kpis.summary`).
DEFAULT_ROWS = (
    "resource cost (EUR)",
    "unserved energy (MWh)",
    "DER dispatched up (MWh)",
    "DER dispatched down (MWh)",
    "violations after delivery",
    "  DER-caused",
    "bytes",
    "TSO problem constraints (mean)",
)
BAR_GID = "bar"


def summary_table(runs: list[Run]) -> pd.DataFrame:
    """The runs' summaries side by side: index KPI (summary label), a column per run."""
    return pd.DataFrame({r.label: summary(r.tables, r.period_h) for r in runs})


def model_bars(summaries: pd.DataFrame, kpis: tuple[str, ...] | list[str] | None = None) -> Figure:
    """Bars of ``summaries`` (index KPI, columns model): a panel per KPI, a bar per model."""
    rows = list(summaries.index if kpis is None else kpis)
    missing = [k for k in rows if k not in summaries.index]
    if missing:
        raise ValueError(f"kpis: {missing} not in the table; allowed: {list(summaries.index)}")
    ncols = min(4, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.8 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    models = list(summaries.columns)
    colors = [f"C{i}" for i in range(len(models))]
    for ax, kpi in zip(axes, rows, strict=False):
        values = summaries.loc[kpi, models].to_numpy(dtype=float)
        bars = ax.bar(range(len(models)), values, color=colors)
        for model, bar in zip(models, bars, strict=True):
            bar.set_gid(f"{BAR_GID}:{model}:{kpi}")
            bar.set_label(model)
        ax.bar_label(bars, fmt=_format, fontsize=7)
        ax.set_title(kpi.strip(), fontsize=9)
        ax.set_xticks([])
        ax.margins(y=0.15)
        if np.all(values == 0):  # say "zero", not a symmetric empty axis
            ax.set_ylim(0, 1)
    for ax in axes[len(rows) :]:
        ax.set_visible(False)
    fig.legend(bars, models, loc="outside upper center", ncols=len(models))
    return fig


def _format(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
