"""market_sim: agent-based market co-simulation of TSO-DSO coordination models."""

from market_sim.results import load_results

__all__ = ["load_results"]
