"""The pluggable families of the engine and their members, each registered once.

A family (coordination models, validation methods, priority rules, pricing rules) maps a name,
as a config file spells it, to where its implementation lives (``"module:attribute"``). The
config schema takes its allowed values from here and the CLI its choices, so adding, say, a
coordination model is one new module and one line below, nothing else.

Why names and import paths rather than the objects themselves: the config schema sits at the
bottom of the import layers (every layer reads it) and must know the allowed names without
importing the engine above it; an implementation is imported only when a run uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any


@dataclass(frozen=True)
class Family:
    """One family of interchangeable implementations, by config name."""

    what: str  # what a member is, for error messages ("coordination model")
    members: dict[str, str]  # name -> "package.module:attribute"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.members)

    def check(self, name: str) -> str:
        """``name`` if it is a member; else a ValueError naming it and what is allowed."""
        if name not in self.members:
            allowed = ", ".join(f"'{n}'" for n in self.members)
            raise ValueError(f"{name!r} is not a {self.what}; allowed: {allowed}")
        return name

    def load(self, name: str) -> Any:
        """The implementation registered under ``name`` (imported on first use)."""
        module, attribute = self.members[self.check(name)].split(":")
        return getattr(import_module(module), attribute)


COORDINATION_MODELS = Family(
    "coordination model",
    {
        "tso_managed": "market_sim.coordination.tso_managed:TsoManaged",
        "hybrid": "market_sim.coordination.hybrid:Hybrid",
        "dso_managed": "market_sim.coordination.dso_managed:DsoManaged",
    },
)

VALIDATION_METHODS = Family(
    "validation method",
    {
        "iterative_pf": "market_sim.grid.iterative_pf:validate_direction",
        "linear_opf": "market_sim.grid.linear_opf:validate_direction",
        "ac_opf": "market_sim.grid.ac_opf:validate_direction",
    },
)

PRIORITY_RULES = Family(
    "priority rule",
    {
        "tso_first": "market_sim.markets.priority:tso_first",
        "dso_first": "market_sim.markets.priority:dso_first",
        "criticality": "market_sim.markets.priority:criticality",
        "economic": "market_sim.markets.priority:economic",
    },
)

PRICING_RULES = Family(
    "pricing rule",
    {
        "pay_as_clear": "market_sim.markets.settlement:pay_as_clear",
        "pay_as_bid": "market_sim.markets.settlement:pay_as_bid",
    },
)
