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

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any


@dataclass(frozen=True)
class Family:
    """One family of interchangeable implementations, by config name."""

    what: str  # what a member is, for error messages ("coordination model")
    members: dict[str, str]  # name -> "package.module:attribute"
    #: members that are a variant of another: name -> (base member, option it sets)
    variants: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (base, option) in self.variants.items():
            if name != f"{base}+{option}" or base not in self.members or name not in self.members:
                raise ValueError(f"{self.what} variant {name!r}: expected a member {base}+{option}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.members)

    def base_of(self, name: str) -> str:
        """The member a variant belongs to (a member that is no variant is its own base)."""
        return self.variants.get(self.check(name), (name, ""))[0]

    def with_options(self, options: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """The variants that set any of ``options``, in registry order; a ValueError names an
        option no variant sets, and the options allowed."""
        known = {option for _, option in self.variants.values()}
        unknown = [o for o in options if o not in known]
        if unknown:
            allowed = ", ".join(f"'{o}'" for o in sorted(known))
            raise ValueError(f"{unknown[0]!r} is no option of a {self.what}; allowed: {allowed}")
        return tuple(n for n, (_, option) in self.variants.items() if option in options)

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


#: The paper's variants of the core models, each a member of its own named ``base+option``
#: (a run's name and folder): the hybrid model with the DSO validating before the bids go to the
#: TSO (Section II-B, refs 28, 31-33), the DSO-managed model with the DSO as the DER's
#: aggregator (Section II-C). ``market-sim compare --variants OPTION ...`` finds them by option.
VARIANTS = {
    "hybrid+pre_validation": ("hybrid", "pre_validation"),
    "dso_managed+dso_is_aggregator": ("dso_managed", "dso_is_aggregator"),
}

COORDINATION_MODELS = Family(
    "coordination model",
    {
        "tso_managed": "market_sim.coordination.tso_managed:TsoManaged",
        "hybrid": "market_sim.coordination.hybrid:Hybrid",
        "dso_managed": "market_sim.coordination.dso_managed:DsoManaged",
        "hybrid+pre_validation": "market_sim.coordination.pre_validation:PreValidation",
        "dso_managed+dso_is_aggregator": "market_sim.coordination.dso_aggregator:DsoIsAggregator",
    },
    VARIANTS,
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
