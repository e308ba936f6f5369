"""KPI time series over a run's periods, several runs (models) overlaid.

One panel per KPI, one line per run in each: ``len(runs) x len(kpis)`` lines, a legend entry
per run. A KPI is a ``kpis`` table name (:data:`market_sim.tables.KPIS`) or one of
:data:`PRICE_SERIES`, the mean over transmission buses of the period's ``prices`` of a market.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from market_sim.plots.runs import Run, as_runs
from market_sim.tables import KPIS

#: Series read from the ``prices`` table: name -> (market, unit).
PRICE_SERIES = {
    "balancing_price_eur_per_mwh": ("balancing", "EUR/MWh"),
    "schedule_price_eur_per_mwh": ("schedule", "EUR/MWh"),
}
#: The default panels: efficiency, DER volumes per direction, violations, prices.
DEFAULT_KPIS = (
    "resource_cost_eur",
    "der_dispatched_up_mwh",
    "der_dispatched_down_mwh",
    "baseline_violations",
    "der_caused_violations",
    "balancing_price_eur_per_mwh",
)
SERIES_GID = "series"
#: Prices are drawn linear within +-this (EUR/MWh), logarithmic beyond (VOLL in scarcity).
PRICE_LINEAR_RANGE = 100.0


def kpi_values(run: Run, name: str) -> pd.Series:
    """One KPI of a run per period (index: period start time)."""
    if name in PRICE_SERIES:
        prices = run.tables["prices"]
        prices = prices[prices.market == PRICE_SERIES[name][0]]
        values = prices.groupby("period").price_eur_per_mwh.mean()
    elif name in KPIS:
        kpis = run.tables["kpis"]
        values = kpis[kpis.name == name].set_index("period").value
    else:
        allowed = ", ".join([*KPIS, *PRICE_SERIES])
        raise ValueError(f"kpis: got {name!r}; allowed: {allowed}")
    return pd.Series(values.to_numpy(float), index=run.period_start(values.index), name=name)


def _held(values: pd.Series, period: pd.Timedelta) -> tuple[list, list]:
    """x and y of a step line that holds each period's value until the period's end."""
    if values.empty:
        return [], []
    return [*values.index, values.index[-1] + period], [*values.to_numpy(), values.iloc[-1]]


def unit_of(name: str) -> str:
    return PRICE_SERIES[name][1] if name in PRICE_SERIES else KPIS[name][0]


def kpi_series(runs, kpis: tuple[str, ...] | list[str] = DEFAULT_KPIS) -> Figure:
    """KPIs of one or several runs (run folders or :class:`Run`) over their periods."""
    runs = as_runs(runs)
    fig = Figure(figsize=(10, 1.9 * len(kpis) + 0.8), layout="constrained")
    axes = fig.subplots(len(kpis), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, kpis, strict=True):
        for i, run in enumerate(runs):
            x, y = _held(kpi_values(run, name), pd.Timedelta(minutes=run.config.period_minutes))
            ax.step(
                x,
                y,
                where="post",
                color=f"C{i}",
                label=run.label,
                gid=f"{SERIES_GID}:{run.label}:{name}",
            )
        if name in PRICE_SERIES:  # scarcity prices at VOLL would flatten every other period
            ax.set_yscale("symlog", linthresh=PRICE_LINEAR_RANGE)
        ax.set_ylabel(unit_of(name))
        ax.set_title(name, loc="left", fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("period start")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=len(runs))
    return fig
