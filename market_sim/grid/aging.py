"""Transformer insulation aging: the IEC 60076-7:2018 thermal model and relative aging rate.

A transformer's paper insulation ages with its winding hot-spot temperature, and the hot spot
follows the loading with the oil's and the winding's time constants (hours and minutes), so
the loading of one 15-minute period heats the next ones: the thermal state is carried from
period to period (:class:`ThermalState`, part of the run state).

The model is the standard's *difference-equation* solution (IEC 60076-7:2018, clause 8.2.3
and its annex), explicit steps of ``dt`` minutes, for a load factor ``K`` (loading / rating)
and an ambient temperature ``θa``::

    θo  += dt / (k11 τo)     · [((1 + K² R) / (1 + R))^x · Δθor − (θo − θa)]
    Δθh1 += dt / (k22 τw)    · [k21 · Δθhr · K^y − Δθh1]
    Δθh2 += dt / (τo / k22)  · [(k21 − 1) · Δθhr · K^y − Δθh2]
    θh  = θo + Δθh1 − Δθh2

``Δθh1 − Δθh2`` is the hot-spot-to-top-oil gradient: with ``k21 > 1`` (power transformers) a
load step makes it overshoot (the fast winding term rises before the slow oil-flow term
catches up); with ``k21 = 1`` (distribution transformers) ``Δθh2`` stays 0. The standard asks
for ``dt`` well below the smallest time constant (at most half of it); a period is cut into
sub-steps of at most :attr:`ThermalParams.max_substep_min`.

Aging (clause 6.3): relative aging rate ``V = 2^((θh − 98)/6)`` for non-upgraded paper (1 at
98 °C), ``V = exp(15000/(110 + 273) − 15000/(θh + 273))`` for thermally upgraded paper (1 at
110 °C); the loss of life over a period is ``∫ V dt`` in hours (sum of ``V · dt`` over the
sub-steps), i.e. hours of life used at the rate of normal aging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import numpy as np

#: Hot spot (°C) at which non-upgraded paper ages at the normal rate V = 1; 6 K doubles V.
NORMAL_PAPER_REFERENCE_C = 98.0
NORMAL_PAPER_DOUBLING_K = 6.0
#: Thermally upgraded paper: V = 1 at 110 °C, Arrhenius form with B = 15000 K.
UPGRADED_PAPER_REFERENCE_C = 110.0
UPGRADED_PAPER_B_K = 15000.0
KELVIN = 273.0  # the standard's offset (not 273.15): V is exactly 1 at the reference


@dataclass(frozen=True)
class ThermalParams:
    """Thermal characteristics of a transformer. Defaults: a distribution transformer, ONAN
    cooling, from IEC 60076-7:2018, clause 8.2 (the table of thermal characteristics
    recommended for the exponential equations, column "distribution transformers, ONAN"),
    with the ambient of 20 °C that the rated rises refer to. At rated load in steady state
    its hot spot is 20 + 55 + 23 = 98 °C, where normal paper ages at V = 1.
    """

    top_oil_rise_k: float = 55.0  # Δθor: top-oil rise over ambient at rated losses, K
    hot_spot_gradient_k: float = 23.0  # Δθhr = H · gr: hot spot over top oil at rated current, K
    loss_ratio: float = 5.0  # R: load losses at rated current / no-load losses
    oil_exponent: float = 0.8  # x: top-oil rise versus total losses
    winding_exponent: float = 1.6  # y: winding gradient versus current
    k11: float = 1.0  # oil time constant multiplier
    k21: float = 1.0  # winding thermal constant (1: no hot-spot overshoot)
    k22: float = 2.0  # winding thermal constant
    oil_time_constant_min: float = 180.0  # τo, min
    winding_time_constant_min: float = 4.0  # τw, min
    #: longest sub-step, min: 1/32 of the fastest default time constant (k22 τw = 8 min),
    #: where the explicit steps stay within 0.1 K of the closed-form response
    max_substep_min: float = 0.25

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ThermalParams.{f.name} = {value}: allowed: a finite value > 0")
        if self.k21 < 1:
            raise ValueError(f"ThermalParams.k21 = {self.k21}: allowed: >= 1")


@dataclass
class ThermalState:
    """The thermal state of a network's transformers (arrays aligned with ``net.trafo``).

    Rises are over ``ambient_c``, the ambient temperature the state was left at: the next
    step starts from the top-oil temperature ``ambient_c + top_oil_rise_k`` whatever its own
    ambient, so that the oil lags a changing ambient as the standard's equations make it.
    """

    top_oil_rise_k: np.ndarray  # θo − θa, K
    hot_spot_rise_1_k: np.ndarray  # Δθh1, K
    hot_spot_rise_2_k: np.ndarray  # Δθh2, K
    ambient_c: float  # θa the rises refer to, °C

    def hot_spot_c(self) -> np.ndarray:
        """θh = θa + (θo − θa) + Δθh1 − Δθh2, °C."""
        return self.top_oil_c() + self.hot_spot_rise_1_k - self.hot_spot_rise_2_k

    def top_oil_c(self) -> np.ndarray:
        return self.ambient_c + self.top_oil_rise_k


@dataclass(frozen=True)
class ThermalPeriod:
    """One period of the thermal model: the state at its end, the hot spot then (°C), and the
    loss of life over it (h at the normal aging rate), per transformer."""

    state: ThermalState
    hot_spot_c: np.ndarray
    loss_of_life_h: np.ndarray


def _ultimate(params: ThermalParams, load_factor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steady-state top-oil rise and winding gradient (the k21-scaled Δθh1) at ``K``."""
    k = np.asarray(load_factor, dtype=float)
    losses = (1.0 + k**2 * params.loss_ratio) / (1.0 + params.loss_ratio)
    oil = losses**params.oil_exponent * params.top_oil_rise_k
    winding = params.hot_spot_gradient_k * k**params.winding_exponent
    return oil, winding


def initial_state(params: ThermalParams, load_factor: np.ndarray, ambient_c: float) -> ThermalState:
    """The steady state at a constant load factor and ambient: where a run starts (the
    standard's own assumption at the start of a calculation, clause 8.2.3)."""
    oil, winding = _ultimate(params, load_factor)
    return ThermalState(oil, params.k21 * winding, (params.k21 - 1.0) * winding, float(ambient_c))


def thermal_period(
    params: ThermalParams,
    state: ThermalState,
    load_factor: np.ndarray,
    ambient_c: float,
    minutes: float,
    upgraded: bool = False,
) -> ThermalPeriod:
    """``minutes`` at a constant load factor (per transformer) and ambient, in sub-steps.

    At constant inputs each difference equation ``x_k = x_(k-1) + a (x∞ − x_(k-1))`` is
    ``x_k = x∞ + (x0 − x∞)(1 − a)^k``: every sub-step's value at once, the same numbers as
    stepping one by one (to rounding), without a Python loop over sub-steps. Loss of life is
    the sum of ``V · dt`` over the sub-steps, ``V`` at each sub-step's end, as the standard
    sums it.
    """
    n = max(1, math.ceil(minutes / params.max_substep_min - 1e-9))
    dt = minutes / n
    oil_rise, winding = _ultimate(params, load_factor)
    k = np.arange(1, n + 1, dtype=float)[:, None]  # sub-steps down, transformers across

    def towards(start: np.ndarray, final: np.ndarray, tau_min: float) -> np.ndarray:
        return final + (start - final) * (1.0 - dt / tau_min) ** k

    top_oil = towards(
        state.ambient_c + state.top_oil_rise_k,
        ambient_c + oil_rise,
        params.k11 * params.oil_time_constant_min,
    )
    h1 = towards(
        state.hot_spot_rise_1_k, params.k21 * winding, params.k22 * params.winding_time_constant_min
    )
    h2 = towards(
        state.hot_spot_rise_2_k,
        (params.k21 - 1.0) * winding,
        params.oil_time_constant_min / params.k22,
    )
    life_h = aging_rate(top_oil + h1 - h2, upgraded).sum(axis=0) * dt / 60.0
    end = ThermalState(top_oil[-1] - ambient_c, h1[-1], h2[-1], float(ambient_c))
    return ThermalPeriod(end, end.hot_spot_c(), life_h)


def thermal_step(
    params: ThermalParams,
    state: ThermalState,
    load_factor: np.ndarray,
    ambient_c: float,
    minutes: float,
) -> tuple[ThermalState, np.ndarray]:
    """The state after ``minutes`` and the hot spot (°C) then, per transformer."""
    period = thermal_period(params, state, load_factor, ambient_c, minutes)
    return period.state, period.hot_spot_c


def loss_of_life_h(
    params: ThermalParams,
    state: ThermalState,
    load_factor: np.ndarray,
    ambient_c: float,
    minutes: float,
    upgraded: bool = False,
) -> tuple[ThermalState, np.ndarray]:
    """The state after ``minutes`` and the loss of life over them (h), per transformer."""
    period = thermal_period(params, state, load_factor, ambient_c, minutes, upgraded)
    return period.state, period.loss_of_life_h


def aging_rate(hot_spot_c: np.ndarray, upgraded: bool = False) -> np.ndarray:
    """Relative aging rate V at a hot spot (°C): 1 at 98 °C (normal paper), 110 °C (upgraded)."""
    theta = np.asarray(hot_spot_c, dtype=float)
    if upgraded:
        b = UPGRADED_PAPER_B_K
        return np.exp(b / (UPGRADED_PAPER_REFERENCE_C + KELVIN) - b / (theta + KELVIN))
    return 2.0 ** ((theta - NORMAL_PAPER_REFERENCE_C) / NORMAL_PAPER_DOUBLING_K)


def with_overrides(overrides: dict[str, float | None]) -> ThermalParams:
    """The default parameters with the given ones replaced (None: keep the default)."""
    return _with_overrides(tuple((k, v) for k, v in overrides.items() if v is not None))


@lru_cache(maxsize=64)
def _with_overrides(overrides: tuple[tuple[str, float], ...]) -> ThermalParams:
    """:func:`with_overrides` of the given pairs, validated once per distinct set: the wear
    stage asks for every network twice a period (the parameters are frozen, so shared)."""
    return replace(ThermalParams(), **dict(overrides))
