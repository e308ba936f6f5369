"""market_sim: agent-based market co-simulation of TSO-DSO coordination models."""

from market_sim.logs import quiet_library_loggers
from market_sim.results import load_results

quiet_library_loggers()

__all__ = ["load_results"]
