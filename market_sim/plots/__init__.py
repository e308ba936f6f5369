"""Figures of runs (matplotlib): callable from Python, written as files by ``market-sim report``.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so nothing
needs a display (saving uses the Agg renderer) and no global figure list keeps them alive; in a
notebook the returned figure shows itself. They take tables (DataFrames, as
:func:`market_sim.results.load_results` returns them) or runs (:func:`load_run` of a folder).
"""

from market_sim.plots.bars import model_bars, summary_table
from market_sim.plots.merit_order import merit_order
from market_sim.plots.network import network, network_at, replay_period
from market_sim.plots.report import write_report
from market_sim.plots.runs import Run, load_run
from market_sim.plots.sequence import message_sequence
from market_sim.plots.series import kpi_series

__all__ = [
    "Run",
    "kpi_series",
    "load_run",
    "merit_order",
    "message_sequence",
    "model_bars",
    "network",
    "network_at",
    "replay_period",
    "summary_table",
    "write_report",
]
