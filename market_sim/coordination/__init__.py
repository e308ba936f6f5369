"""Coordination models, one module each, registered in :mod:`market_sim.registry`."""
