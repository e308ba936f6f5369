"""Value types that flow between the stages of a market period.

Sign convention, stated once for the whole project: **injection into the network is positive**.
An *up* service means more injection or less consumption; a *down* service the opposite. Bid
quantities (``mw``) are always non-negative; the ``direction`` column carries the sign.
Prices are in EUR/MWh and are what the buyer of the service pays per MWh delivered; a negative
price means the provider pays the buyer (e.g. a generator that saves fuel when moved down).

Tables inside these types are pandas DataFrames so that one message carries many bids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from market_sim.columns import new_frame

UP = "up"
DOWN = "down"
DIRECTIONS = (UP, DOWN)

#: pandapower element tables that prosumers own and bids act on.
ELEMENT_TABLES = ("load", "sgen", "storage")

#: Columns of a bid book. One row is one bid of one device in one direction.
BID_COLUMNS = {
    "bid_id": "int64",  # unique within the run, stable across periods for a device+direction
    "prosumer": "int64",  # prosumer agent id
    "aggregator": "string",  # aggregator name
    "dso": "string",  # DSO name (the distribution network the device sits in)
    "element": "string",  # pandapower table of the device: load, sgen or storage
    "element_index": "int64",  # index in that pandapower table
    "bus": "int64",  # pandapower bus of the device in the DSO network
    "direction": "string",  # "up" (more injection) or "down" (less injection)
    "mw": "float64",  # offered quantity, >= 0
    "price_eur_per_mwh": "float64",  # asked price
}


def typed_frame(columns: Mapping[str, Any], dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A table of ``columns`` with the declared ``dtypes``, in their order: numeric columns
    as numpy arrays, text (``"string"``) as pandas strings. The stages build such tables every
    period, and a pandas array per numeric column costs as much again as the table. The
    frame holds copies of the columns, taken as they are (:func:`~.columns.new_frame`)."""
    return new_frame(
        {
            c: _strings(columns[c]) if t == "string" else np.array(columns[c], dtype=t)
            for c, t in dtypes.items()
        }
    )


def _strings(values: Any) -> pd.api.extensions.ExtensionArray:
    """A copy of ``values`` as pandas strings: of pandas strings as they are (checking each
    value again cost as much as the rest of a bid book's table), of others by
    ``pd.array(values, dtype="string")`` (values made text, missing ones NA), by the call it
    makes: its inference of what it was given costs as much again."""
    dtype = pd.StringDtype()
    if isinstance(values, pd.api.extensions.ExtensionArray) and values.dtype == dtype:
        return values.copy()
    return dtype.construct_array_type()._from_sequence(values, dtype=dtype, copy=True)


def empty_bids() -> pd.DataFrame:
    """An empty bid book with the right dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in BID_COLUMNS.items()})


def signed_mw(direction: pd.Series | np.ndarray, mw: pd.Series | np.ndarray) -> np.ndarray:
    """Injection change in MW of a quantity in a direction (up positive, down negative)."""
    sign = np.where(np.asarray(direction) == UP, 1.0, -1.0)
    return sign * np.asarray(mw, dtype=float)


@dataclass(frozen=True)
class Limits:
    """Operating limits a validator enforces on a distribution network.

    ``trafo_loading_percent``: a loading limit per transformer (aligned with ``net.trafo``)
    where it is tighter than ``max_loading_percent`` (a DSO's wear-derived validation limit,
    :mod:`market_sim.grid.validation_limits`); None: ``max_loading_percent`` for all.
    """

    vm_min_pu: float = 0.95
    vm_max_pu: float = 1.05
    max_loading_percent: float = 100.0
    trafo_loading_percent: tuple[float, ...] | None = None

    def trafo_limits(self, n: int) -> np.ndarray:
        """The loading limit of each of ``n`` transformers, %."""
        if self.trafo_loading_percent is None:
            return np.full(n, self.max_loading_percent)
        return np.fmin(np.asarray(self.trafo_loading_percent, float), self.max_loading_percent)


@dataclass
class Injections:
    """Absolute set-points of every load, sgen and storage of one network for one period.

    ``p_mw[table]`` and ``q_mvar[table]`` are aligned with ``net[table].index`` and use
    pandapower's own sign per table (load and storage: consumption positive; sgen: generation
    positive). ``trafo_tap_pos`` holds the tap position of every transformer (aligned with
    ``net.trafo.index``).
    """

    p_mw: dict[str, np.ndarray]
    q_mvar: dict[str, np.ndarray]
    trafo_tap_pos: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def copy(self) -> Injections:
        return Injections(
            {k: v.copy() for k, v in self.p_mw.items()},
            {k: v.copy() for k, v in self.q_mvar.items()},
            self.trafo_tap_pos.copy(),
        )


@dataclass(frozen=True)
class PowerFlowResult:
    """Summary of one AC power flow of a distribution network.

    ``interface_p_mw`` is the net injection of the distribution network into the transmission
    network at its interface (positive = the DSO area exports).
    """

    converged: bool
    vm_min_pu: float
    vm_max_pu: float
    max_line_loading_percent: float
    max_trafo_loading_percent: float
    n_voltage_violations: int
    n_line_violations: int
    n_trafo_violations: int
    interface_p_mw: float
    interface_q_mvar: float

    @property
    def n_violations(self) -> int:
        return self.n_voltage_violations + self.n_line_violations + self.n_trafo_violations

    @property
    def within_limits(self) -> bool:
        return self.converged and self.n_violations == 0


@dataclass(frozen=True)
class DirectionStats:
    """What validating the bids of one direction gave: the numbers methods are compared by.

    ``jain`` is Jain's index and ``min_share`` the smallest validated share of the offered
    bids (NaN without them); ``lp_solves`` and ``binding`` are those of the chosen tap setting.
    """

    offered_mw: float
    validated_mw: float
    jain: float = float("nan")
    min_share: float = float("nan")
    converged: bool = True
    lp_solves: int = 0
    binding: tuple[str, ...] = ()


@dataclass(frozen=True)
class TapCandidate:
    """One tap vector an OLTC validation tried and what it validated (None: unsafe alone)."""

    taps: tuple[float, ...]
    validated_mw: float | None


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of validating one bid book against one distribution network.

    ``table`` has one row per bid: ``bid_id``, ``validated_mw`` (0 <= validated <= offered) and
    ``reason`` (``"ok"``, ``"cut: <constraint>"``, ``"rejected: <why>"``). ``iterations``
    counts the AC power flows. ``trafo_tap_pos`` is the tap vector (aligned with
    ``net.trafo``) the validation assumed: delivery must use it when the validator chose taps
    (OLTC). The rest is what researchers compare methods by: the method and fairness policy,
    :class:`DirectionStats` per direction, LP solves (over every tap setting tried), compute
    time and, with OLTC, the tap settings tried. ``runpp_reason`` says why pandapower's
    ``runpp`` solved the network's power flows instead of lightsim2grid ("" if it did not).
    """

    table: pd.DataFrame
    iterations: int
    converged: bool
    binding: tuple[str, ...] = ()
    message: str = ""
    trafo_tap_pos: np.ndarray | None = None
    method: str = ""
    fairness: str = ""
    directions: dict[str, DirectionStats] = field(default_factory=dict)
    lp_solves: int = 0
    time_s: float = 0.0
    tap_candidates: tuple[TapCandidate, ...] = ()
    runpp_reason: str = ""

    @property
    def offered_mw(self) -> float:
        return float(sum(s.offered_mw for s in self.directions.values()))

    @property
    def validated_mw(self) -> float:
        return float(self.table["validated_mw"].sum())
