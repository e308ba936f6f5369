"""A scenario's data: its networks, loaded once, after the checks that need them.

The config schema (:mod:`market_sim.config`) checks what a file says; this module checks what
it refers to (a SimBench code exists, an interface bus is a bus of the transmission case),
once, before any network is built or any period simulated, with the same one-line
:class:`~market_sim.config.ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

from market_sim.config import ConfigError, ScenarioConfig
from market_sim.grid.network import DistributionNetwork, check_code, load_network
from market_sim.markets.transmission import TransmissionNetwork, load_case


@dataclass(frozen=True)
class Scenario:
    """A checked config with its networks: share one between the runs of its models."""

    config: ScenarioConfig
    networks: dict[str, DistributionNetwork]
    transmission: TransmissionNetwork


def check_data(config: ScenarioConfig, source: str = "config") -> TransmissionNetwork:
    """Check every reference of ``config`` to data; returns the transmission case it loaded.

    Raises :class:`ConfigError` whose message starts with ``source`` (the file's path).
    """
    for i, dso in enumerate(config.dsos):
        try:
            check_code(dso.simbench_code)
        except ValueError as error:
            raise ConfigError(f"{source}: dsos.{i}.simbench_code: {error}") from None
    try:
        transmission = load_case(config.transmission.case, config.transmission.costs)
    except ValueError as error:
        raise ConfigError(f"{source}: transmission.case: {error}") from None
    buses = transmission.bus_lookup
    for i, dso in enumerate(config.dsos):
        if dso.interface_bus not in buses:
            raise ConfigError(
                f"{source}: dsos.{i}.interface_bus: bus {dso.interface_bus} is not in "
                f"{config.transmission.case}; allowed: {min(buses)}..{max(buses)}"
            )
    return transmission


def load_networks(config: ScenarioConfig) -> dict[str, DistributionNetwork]:
    """Every DSO network of a scenario, loaded once (share them between runs of one scenario)."""
    return {
        d.name: load_network(d.simbench_code, d.pv_scale, d.storage_scale, d.load_scale)
        for d in config.dsos
    }


def load_scenario(config: ScenarioConfig, source: str = "config") -> Scenario:
    """Check ``config`` against its data, then load its networks."""
    transmission = check_data(config, source)
    return Scenario(config, load_networks(config), transmission)
