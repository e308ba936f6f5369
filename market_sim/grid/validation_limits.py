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

Approximations of the wear-derived limit, stated: the hot spot is IEC 60076-7's steady state
at a constant 20 C ambient (the standard's reference, where a transformer at rated load ages
at V = 1) with its medium power transformer ONAN parameters below, not the dynamic model
(a 15-minute period is far shorter than the oil time constant, so this is the limit for a
sustained loading); a MW of validated flexibility changes the transformer's apparent power by
one MVA (an upper bound: dS/dP = P/S <= 1). Normal (not thermally upgraded) paper.
"""

from __future__ import annotations

import math

import numpy as np

from market_sim.config import ConflictOfInterestConfig
from market_sim.types import Limits

#: IEC 60076-7 (2005) Table 5, medium power transformers, ONAN: top-oil rise at rated load
#: (K), hot-spot to top-oil gradient (H x g_r, K), loss ratio R, oil exponent x, winding
#: exponent y. At 20 C ambient and rated load the hot spot is 20 + 52 + 26 = 98 C: V = 1.
TOP_OIL_RISE_K = 52.0
HOT_SPOT_GRADIENT_K = 26.0
LOSS_RATIO = 6.0
OIL_EXPONENT = 0.8
WINDING_EXPONENT = 1.3
AMBIENT_C = 20.0


def hot_spot_c(k: float) -> float:
    """Steady-state hot-spot temperature (C) at loading ``k`` (share of rating)."""
    oil = TOP_OIL_RISE_K * ((1 + LOSS_RATIO * k * k) / (1 + LOSS_RATIO)) ** OIL_EXPONENT
    return AMBIENT_C + oil + HOT_SPOT_GRADIENT_K * k**WINDING_EXPONENT


def aging_rate(k: float) -> float:
    """Relative aging rate V of normal paper at loading ``k``: 2^((theta_h - 98) / 6)."""
    return 2.0 ** ((hot_spot_c(k) - 98.0) / 6.0)


def aging_rate_slope(k: float, dk: float = 1e-6) -> float:
    """dV/dK at ``k`` (per share of rating), by central difference."""
    return (aging_rate(k + dk) - aging_rate(k - dk)) / (2 * dk)


def wear_loading_percent(sn_mva: float, wear_weight: float) -> float:
    """The loading (%) where ``wear_weight * V'(K) = sn_mva``: above it one more MW through
    the transformer costs more weighted loss of life than the energy it validates.

    ``V'`` increases with K, so bisection finds the one crossing; inf without a weight.
    """
    if wear_weight <= 0:
        return math.inf
    target = sn_mva / wear_weight
    lo, hi = 0.0, 3.0
    if aging_rate_slope(hi) < target:
        return 100.0 * hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if aging_rate_slope(mid) < target else (lo, mid)
    return 100.0 * 0.5 * (lo + hi)


def validation_limits(
    physical: Limits, coi: ConflictOfInterestConfig, trafo_sn_mva: np.ndarray
) -> Limits:
    """The limits a DSO validates with: ``physical`` tightened by its conflict of interest
    (``trafo_sn_mva``: rating of each transformer, aligned with ``net.trafo``). The defaults
    give ``physical`` itself."""
    loading = physical.max_loading_percent * coi.loading_limit_share
    trafo = None
    if coi.wear_weight > 0:
        wear = [wear_loading_percent(float(s), coi.wear_weight) for s in trafo_sn_mva]
        if any(w < loading for w in wear):
            trafo = tuple(min(w, loading) for w in wear)
    return Limits(
        vm_min_pu=physical.vm_min_pu + coi.voltage_margin_pu,
        vm_max_pu=physical.vm_max_pu - coi.voltage_margin_pu,
        max_loading_percent=loading,
        trafo_loading_percent=trafo,
    )
