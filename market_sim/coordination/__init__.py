"""Coordination models, one module each; the registry maps a config name to its class."""

from market_sim.coordination.base import CoordinationModel, PeriodOutcome, Step
from market_sim.coordination.dso_managed import DsoManaged
from market_sim.coordination.hybrid import Hybrid
from market_sim.coordination.tso_managed import TsoManaged

REGISTRY: dict[str, type[CoordinationModel]] = {m.name: m for m in (TsoManaged, Hybrid, DsoManaged)}

__all__ = ["REGISTRY", "CoordinationModel", "PeriodOutcome", "Step"]
