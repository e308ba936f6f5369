"""A DSO's validation limits: the physical limits moved by its conflict of interest (issue 9).

The network's physical limits judge delivery and count violations. A DSO that owns the assets
may validate with tighter limits of its own choice (the paper's Sections II-B, II-C: the DSO's
conflict of interest). Three parameters (``dsos[i].conflict_of_interest``) give them:

* ``loading_limit_share``: the line and transformer loading limit is this share of the
  physical one;
* ``voltage_margin_pu``: the voltage band shrinks by this margin on both sides;
* ``wear_weight`` ``w`` (MWh of validated flexibility per hour of transformer loss of life,
  i.e. MW): the DSO's validation objective becomes *validated energy minus w x transformer
  loss of life*. One more MW through a transformer of rating ``S_r`` (MVA) for a period of
  T hours brings T MWh of validated energy and costs ``T * V'(K) / S_r`` hours of loss of
  life, ``V(K)`` being IEC 60076-7's relative aging rate at loading K (share of rating) and
  ``V'`` its derivative; so the DSO validates up to the loading ``K_w`` where
  ``w * V'(K_w) = S_r`` and no further. Why a derived limit rather than a term in each
  method's objective: the three validation methods (iterative_pf, linear_opf, ac_opf) share
  one set of limits (:func:`~.constraints.effective_limits`), so a limit works in all of them
  alike, and the marginal condition is where the weighted objective stops gaining.

Approximations of the wear-derived limit, stated: the hot spot is the steady state of the
DSO's own transformer thermal model (:mod:`.aging`, IEC 60076-7, its ``aging`` config:
parameters, mean ambient, paper) at the loading K, not the dynamic response (a 15-minute
period is far shorter than the oil time constant, so this is the limit for a sustained
loading); a MW of validated flexibility changes the transformer's apparent power by one MVA
(an upper bound: dS/dP = P/S <= 1).
"""

from __future__ import annotations

import math

import numpy as np

from market_sim.config import ConflictOfInterestConfig
from market_sim.grid.aging import ThermalParams, aging_rate, initial_state
from market_sim.types import Limits


def steady_aging_rate(k: float, params: ThermalParams, ambient_c: float, upgraded: bool) -> float:
    """Relative aging rate V at a constant loading ``k`` (share of rating), in steady state."""
    hot_spot = initial_state(params, np.array([k]), ambient_c).hot_spot_c()
    return float(aging_rate(hot_spot, upgraded)[0])


def aging_rate_slope(
    k: float, params: ThermalParams, ambient_c: float, upgraded: bool, dk: float = 1e-6
) -> float:
    """dV/dK at ``k`` (per share of rating), by central difference."""
    up = steady_aging_rate(k + dk, params, ambient_c, upgraded)
    return (up - steady_aging_rate(k - dk, params, ambient_c, upgraded)) / (2 * dk)


def wear_loading_percent(
    sn_mva: float,
    wear_weight: float,
    params: ThermalParams,
    ambient_c: float,
    upgraded: bool = False,
) -> float:
    """The loading (%) where ``wear_weight * V'(K) = sn_mva``: above it one more MW through
    the transformer costs more weighted loss of life than the energy it validates.

    ``V'`` increases with K, so bisection finds the one crossing; inf without a weight.
    """
    if wear_weight <= 0:
        return math.inf
    target = sn_mva / wear_weight

    def slope(k: float) -> float:
        return aging_rate_slope(k, params, ambient_c, upgraded)

    lo, hi = 0.0, 3.0
    if slope(hi) < target:
        return 100.0 * hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(mid) < target else (lo, mid)
    return 100.0 * 0.5 * (lo + hi)


def validation_limits(
    physical: Limits,
    coi: ConflictOfInterestConfig,
    trafo_sn_mva: np.ndarray,
    params: ThermalParams | None = None,
    ambient_c: float = 20.0,
    upgraded: bool = False,
) -> Limits:
    """The limits a DSO validates with: ``physical`` tightened by its conflict of interest
    (``trafo_sn_mva``: rating of each transformer, aligned with ``net.trafo``; ``params``,
    ``ambient_c``, ``upgraded``: its transformers' thermal model, default IEC 60076-7's
    distribution transformer at 20 C). The defaults of ``coi`` give ``physical`` itself."""
    loading = physical.max_loading_percent * coi.loading_limit_share
    trafo = None
    if coi.wear_weight > 0:
        thermal = params or ThermalParams()
        wear = [
            wear_loading_percent(float(s), coi.wear_weight, thermal, ambient_c, upgraded)
            for s in trafo_sn_mva
        ]
        if any(w < loading for w in wear):
            trafo = tuple(min(w, loading) for w in wear)
    return Limits(
        vm_min_pu=physical.vm_min_pu + coi.voltage_margin_pu,
        vm_max_pu=physical.vm_max_pu - coi.voltage_margin_pu,
        max_loading_percent=loading,
        trafo_loading_percent=trafo,
    )
