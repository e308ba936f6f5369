"""The model the interactive page steps: a :class:`MarketModel` built from a loaded scenario.

SolaraViz rebuilds its model as ``type(model)(**params)`` when the user resets it or switches
the coordination model, so the model takes keyword parameters only: the scenario (loaded once per
server process, networks included) and the coordination model's name.
"""

from __future__ import annotations

from functools import cache

from market_sim.config import load_config
from market_sim.model import MarketModel
from market_sim.scenario import Scenario, load_scenario


@cache
def load_served_scenario(config_path: str) -> Scenario:
    """The scenario of ``config_path``, loaded once per process (every page shares it)."""
    return load_scenario(load_config(config_path), config_path)


class ServedMarket(MarketModel):
    """One scenario under the chosen coordination model, stepped by the page."""

    def __init__(self, scenario: Scenario, coordination: str) -> None:
        config = scenario.config.for_model(coordination)
        super().__init__(config, scenario.networks, scenario.transmission)
        self.name = coordination

    def heading(self) -> str:
        """What the page shows: the model, the last period run and its clock time."""
        if self.period == 0:
            return f"{self.name}: no period run yet (press Step)"
        shown = self.period - 1
        minutes = shown * self.config.period_minutes
        day, minute = divmod(minutes, 24 * 60)
        clock = f"day {day + 1}, {minute // 60:02d}:{minute % 60:02d}"
        done = "" if self.running else " (end of the scenario)"
        return f"{self.name}: period {shown} ({clock}){done}"
