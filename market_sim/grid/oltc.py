"""Candidate tap positions of the DSO's on-load tap changers (HV/MV transformers).

A DSO that controls its HV/MV transformer taps can move the whole MV voltage profile: lowering
it makes room for more injection (up bids under an upper voltage limit), raising it for more
consumption. Validation tries the current position and a few neighbours (discrete, within
``tap_min..tap_max``; all HV/MV transformers move together because SimBench's parallel HV/MV
transformers feed the same busbar) and keeps the one that validates the most volume. Enumerating
a handful of discrete positions is exact for the tap variable, which a linearised continuous tap
followed by rounding is not.
"""

from __future__ import annotations

import numpy as np

from market_sim.grid.network import DistributionNetwork

#: Buses at or above this voltage are the HV side of an HV/MV transformer.
HV_KV = 60.0


def hv_mv_trafos(dn: DistributionNetwork) -> np.ndarray:
    """Positions in net.trafo of in-service transformers with an HV (>= 60 kV) side and a tap."""
    net = dn.net
    trafo = net.trafo
    if not len(trafo):
        return np.zeros(0, dtype=np.int64)
    hv_kv = net.bus["vn_kv"].reindex(trafo["hv_bus"]).to_numpy(dtype=float)
    has_tap = trafo["tap_min"].notna().to_numpy() & trafo["tap_max"].notna().to_numpy()
    ok = (hv_kv >= HV_KV) & has_tap & trafo["in_service"].to_numpy(dtype=bool)
    return np.flatnonzero(ok)


def _tap_ranges(dn: DistributionNetwork) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`hv_mv_trafos` and their ``tap_min`` / ``tap_max``, read from the net once (kept
    in ``dn.solver_cache``: the transformers do not change during a run, and a DSO with OLTC
    asks every period)."""
    cache = dn.solver_cache
    if "tap_ranges" not in cache:
        which = hv_mv_trafos(dn)
        lo = hi = np.zeros(0)
        if which.size:
            lo = dn.net.trafo["tap_min"].to_numpy(dtype=float)[which]
            hi = dn.net.trafo["tap_max"].to_numpy(dtype=float)[which]
        cache["tap_ranges"] = (which, lo, hi)
    return cache["tap_ranges"]


def tap_candidates(dn: DistributionNetwork, taps: np.ndarray, reach: int = 2) -> list[np.ndarray]:
    """Tap vectors to try: ``taps`` first, then HV/MV offsets +-1, +-2 ... ``reach`` (clipped)."""
    taps = np.asarray(taps, dtype=float)
    which, lo, hi = _tap_ranges(dn)
    out = [taps.copy()]
    if not which.size:
        return out
    seen = {tuple(taps.tolist())}
    for step in range(1, reach + 1):
        for offset in (-step, step):
            cand = taps.copy()
            cand[which] = np.clip(taps[which] + offset, lo, hi)
            key = tuple(cand.tolist())
            if key not in seen:
                seen.add(key)
                out.append(cand)
    return out
