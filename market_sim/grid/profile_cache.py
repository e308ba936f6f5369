"""SimBench profiles of a net as profile types x per-element factors, cached and verified.

``simbench.get_absolute_values`` multiplies, for every element, the relative profile its
``profile`` column names by its rated ``p_mw`` / ``q_mvar`` (one float64 product per value),
after copying the relative values into a float64 array of ones (elements without a profile
read 1). :func:`compact_profiles` asks SimBench for the relative profiles themselves, by
calling the same function on a stand-in table with one row per profile name and a rated value
of exactly 1.0 (so that SimBench's own rules pick the columns: load suffixes, renewables and
power plants merged, missing profiles refused), and keeps the rated values as factors:
``relative * 1.0 * rated`` is bit for bit SimBench's ``relative * rated``. The 10k-bus grid's
cache shrinks from 8.1 GB to megabytes, and building it no longer materialises the year.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd
import simbench

from market_sim.grid.disk_cache import atomic_write, cache_dir, verified, write_manifest
from market_sim.grid.profiles import (
    N_PROFILE_STEPS,
    PROFILE_KEYS,
    CompactProfile,
    ProfileArray,
    profile_stats,
)

log = logging.getLogger(__name__)

#: Bump when the layout or the content of the profile cache changes: old caches are then
#: never read (the version is part of the entry's name and of its manifest).
PROFILE_CACHE_VERSION = 3
_FILE = "profiles.npz"
_STATS = ("rowsum", "colmax", "colmin")


def profile_cache_path(code: str) -> Path:
    key = f"{code}__v{PROFILE_CACHE_VERSION}__pp{pp.__version__}__sb{simbench.__version__}"
    return cache_dir() / "profiles" / key


def _compact(net: Any, table: str, column: str) -> CompactProfile:
    """One profile of ``net[table][column]`` as SimBench's relative types x rated values."""
    elements = net[table]
    factor = elements[column].to_numpy(dtype=float, copy=True)  # the net is scaled later
    stub = pp.create_empty_network()
    stub["profiles"] = net["profiles"]
    if "profile" in elements:
        names = pd.unique(elements["profile"])  # a NaN name: SimBench refuses it, as it does
        stub[table] = pd.DataFrame({"profile": names, column: 1.0})
        type_of = pd.Index(names).get_indexer(elements["profile"])
    else:  # SimBench's rule: no profile column means factor 1 everywhere
        stub[table] = pd.DataFrame({column: [1.0]})
        type_of = np.zeros(len(elements), dtype=np.int64)
    rel = simbench.get_absolute_profiles_from_relative_profiles(stub, table, column)
    types = rel.to_numpy(dtype=float)
    # A NaN step read as the element's static value in the uncompressed cache: 1 x rated.
    types = np.ascontiguousarray(np.where(np.isnan(types), 1.0, types))
    return CompactProfile(types, type_of.astype(np.int64), factor)


def compact_profiles(net: Any) -> dict[str, CompactProfile]:
    """Every profile of :data:`PROFILE_KEYS` of a SimBench net, compact (see module doc)."""
    return {key: _compact(net, table, column) for key, table, column in PROFILE_KEYS}


def _wrap(compact: dict[str, CompactProfile], stats: dict[str, dict]) -> dict[str, ProfileArray]:
    return {k: ProfileArray(c, (), stats[k]) for k, c in compact.items()}


def _read(path: Path, net: Any) -> dict[str, ProfileArray] | None:
    """The verified cache in ``path`` if it was made for this net, else None."""
    if not verified(path, PROFILE_CACHE_VERSION):
        return None
    with np.load(path / _FILE) as data:
        if not (
            np.array_equal(data["load_index"], net.load.index.to_numpy())
            and np.array_equal(data["sgen_index"], net.sgen.index.to_numpy())
        ):
            log.warning("profile cache %s does not match the net; rebuilding", path)
            return None
        compact, stats = {}, {}
        for key, table, _ in PROFILE_KEYS:
            c = CompactProfile(data[f"{key}_types"], data[f"{key}_type_of"], data[f"{key}_factor"])
            if c.shape != (N_PROFILE_STEPS, len(net[table])):
                log.warning("profile cache %s has a wrong shape; rebuilding", path)
                return None
            compact[key] = c
            stats[key] = {s: data[f"{key}_{s}"] for s in _STATS}
    return _wrap(compact, stats)


def _write(path: Path, net: Any, compact: dict[str, CompactProfile], stats: dict) -> None:
    arrays: dict[str, np.ndarray] = {
        "load_index": net.load.index.to_numpy(),
        "sgen_index": net.sgen.index.to_numpy(),
    }
    for key, c in compact.items():
        arrays.update({f"{key}_types": c.types, f"{key}_type_of": c.type_of})
        arrays[f"{key}_factor"] = c.factor
        arrays.update({f"{key}_{s}": v for s, v in stats[key].items()})
    atomic_write(path / _FILE, lambda fh: np.savez(fh, **arrays))
    write_manifest(path, [_FILE], PROFILE_CACHE_VERSION)


def raw_profiles(code: str, net: Any, use_cache: bool = True) -> dict[str, ProfileArray]:
    """Unscaled absolute profiles of ``net`` (SimBench ``code``), from the verified cache.

    A missing, stale, truncated or corrupted cache is rebuilt from SimBench (the last two
    with a warning, see :func:`~market_sim.grid.disk_cache.verified`); the entry's name
    carries the format and the pandapower and simbench versions.
    """
    path = profile_cache_path(code)
    if use_cache:
        cached = _read(path, net)
        if cached is not None:
            return cached
    log.info("computing SimBench profiles of %s (cached afterwards)", code)
    compact = compact_profiles(net)
    stats = {k: profile_stats(c) for k, c in compact.items()}
    if use_cache:
        _write(path, net, compact, stats)
    return _wrap(compact, stats)
