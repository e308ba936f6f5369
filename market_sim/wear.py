"""The wear stage: what a period's delivered power flow did to each DSO's assets.

Transformers age with their hot spot (:mod:`market_sim.grid.aging`, IEC 60076-7), which
follows the delivered loading with the oil's time constant: the thermal state of every
network's transformers is carried from period to period in the run state. Lines are counted
by the hours they spend above loading thresholds. The same stage on the baseline power flow
(no DER activated), with a thermal state of its own, tells the aging the DER activation
caused from the network's own.

A transformer whose loading is unknown in a period (its power flow did not converge, or it
is out of service) gets NaN rows and keeps its rises: its wear is left out of the period's
sums, as its violations are (the event says why), never counted as none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from market_sim.columns import numbers
from market_sim.config import AgingConfig
from market_sim.delivery import Delivered
from market_sim.grid.aging import ThermalState, initial_state, thermal_period, with_overrides


@dataclass(frozen=True)
class Wear:
    """One DSO network's wear in a period: its ``aging`` rows (one per transformer, without
    the period), and the sums the KPIs are made of.

    The rows are kept as numpy columns and made a table only when asked for: only the
    delivered state's are recorded, and the KPIs' sums need no table.
    """

    dso: str
    trafo: np.ndarray  # index of each transformer in net.trafo
    columns: dict[str, np.ndarray]  # the aging columns from load_factor on, per transformer
    line_hours_above: tuple[float, ...]  # lines above each threshold x period hours

    @property
    def rows(self) -> pd.DataFrame:
        """The ``aging`` rows: dso, trafo and the aging columns."""
        return pd.DataFrame({"dso": self.dso, "trafo": self.trafo, **self.columns})

    @property
    def loss_of_life_h(self) -> float:
        """Sum over transformers with a known loading, h."""
        return float(np.nansum(self.columns["loss_of_life_h"]))  # NaN skipped, as pandas does

    @property
    def hot_spot_max_c(self) -> float:
        """Hottest transformer at the period's end, °C (NaN if none is known)."""
        hot_spot = self.columns["hot_spot_c"]
        known = hot_spot[~np.isnan(hot_spot)]
        return float(known.max()) if len(known) else math.nan


def ambient_c(cfg: AgingConfig, hour_of_day: float) -> float:
    """The ambient temperature at an hour of the day, °C: the mean, plus a daily cosine
    swing of ``ambient_daily_amplitude_k`` peaking at ``ambient_peak_hour``."""
    swing = math.cos(2 * math.pi * (hour_of_day - cfg.ambient_peak_hour) / 24)
    return cfg.ambient_c + cfg.ambient_daily_amplitude_k * swing


def period_wear(
    dsos: Mapping,
    flows: Mapping[str, Delivered],
    states: Mapping[str, ThermalState],
    hour_of_day: float,
    minutes: float,
) -> tuple[dict[str, ThermalState], dict[str, Wear]]:
    """Each DSO network's transformer aging and line loading hours over one period.

    ``flows``: each network's power flow of the period (delivery or baseline); ``states``:
    the thermal states it leaves off from (a network missing starts in the steady state of
    this period's loading); ``hour_of_day``: the middle of the period, for the ambient.
    Returns the new states and each network's :class:`Wear`.
    """
    new_states, wears = {}, {}
    for name, flow in flows.items():
        dso = dsos[name]
        cfg: AgingConfig = dso.config.aging
        net = dso.network.net
        trafo = in_service(net.trafo, flow.trafo_loading_percent)
        new_states[name], columns = age_transformers(
            trafo / 100.0, states.get(name), cfg, ambient_c(cfg, hour_of_day), minutes
        )
        line = in_service(net.line, flow.line_loading_percent)
        hours = minutes / 60.0
        # count_nonzero: the count np.sum gives, without its reduction's Python wrapper
        above = tuple(
            float(np.count_nonzero(line > t)) * hours for t in cfg.line_thresholds_percent
        )
        wears[name] = Wear(name, net.trafo.index.to_numpy(np.int64), columns, above)
    return new_states, wears


def age_transformers(
    load_factor: np.ndarray,
    state: ThermalState | None,
    cfg: AgingConfig,
    ambient: float,
    minutes: float,
) -> tuple[ThermalState, dict[str, np.ndarray]]:
    """One period of a network's transformers at ``load_factor`` (NaN: unknown) and an
    ambient; None for ``state`` starts from the steady state of this loading. Returns the new
    state and the ``aging`` columns from ``load_factor`` on, per transformer."""
    params = with_overrides(cfg.thermal.model_dump())
    known = np.isfinite(load_factor)
    load = np.where(known, load_factor, 0.0)
    if state is None:
        state = initial_state(params, load, ambient)
    period = thermal_period(params, state, load, ambient, minutes, cfg.upgraded_paper)
    end = period.state
    kept = ThermalState(
        np.where(known, end.top_oil_rise_k, state.top_oil_rise_k),
        np.where(known, end.hot_spot_rise_1_k, state.hot_spot_rise_1_k),
        np.where(known, end.hot_spot_rise_2_k, state.hot_spot_rise_2_k),
        end.ambient_c,
    )
    life = np.where(known, period.loss_of_life_h, np.nan)
    columns = {
        "load_factor": np.where(known, load_factor, np.nan),
        "top_oil_c": np.where(known, end.top_oil_c(), np.nan),
        "hot_spot_c": np.where(known, period.hot_spot_c, np.nan),
        "aging_rate": life / (minutes / 60.0),
        "loss_of_life_h": life,
    }
    return kept, columns


def in_service(table: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """``values`` where the element is in service, NaN elsewhere (and where not computed);
    the flags read as the table's own array (no Series per call: four networks a period)."""
    on = numbers(table, "in_service", bool)
    return np.where(on, values, np.nan)
