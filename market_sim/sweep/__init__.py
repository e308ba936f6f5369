"""Sweeps: a grid over config fields run as independent runs on Dask (``market-sim sweep``)."""

from market_sim.sweep.execute import SweepResult, run_sweep, sweep_line
from market_sim.sweep.spec import Sweep, SweepRun, load_sweep, set_dotted

__all__ = [
    "Sweep",
    "SweepResult",
    "SweepRun",
    "load_sweep",
    "run_sweep",
    "set_dotted",
    "sweep_line",
]
