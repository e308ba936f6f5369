"""A year of SimBench profiles, memory-mapped from the disk cache and scaled lazily.

A year of profiles is large (35,136 steps x 14,589 loads is 4.1 GB per array on the 10k-bus
MV-LV grid) while a run needs a day or a few. Profiles are therefore cached as uncompressed
float64 ``.npy`` files, opened with ``mmap_mode="r"``, and scaled lazily by
:class:`ProfileArray` only for the rows a caller reads: loading costs milliseconds instead of
reading and scaling 9 GB, and every value read is bit-identical to scaling the whole array.
Whole-year reductions the model needs (row sums, column maxima) are computed once when the
cache is written and stored next to it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import simbench

from market_sim.grid.disk_cache import atomic_write, cache_dir

log = logging.getLogger(__name__)

#: SimBench profiles cover the leap year 2016 in 15-minute steps.
N_PROFILE_STEPS = 35136

#: Profile arrays every DistributionNetwork carries: (key, pandapower table, column).
PROFILE_KEYS = (
    ("load_p", "load", "p_mw"),
    ("load_q", "load", "q_mvar"),
    ("sgen_p", "sgen", "p_mw"),
)


#: Bump when the layout or the content of the profile cache changes: old caches are then
#: never read (the version is part of the cache directory name).
PROFILE_CACHE_VERSION = 2
#: Rows per block when a whole-year reduction has to be computed (8 MB blocks on 10k loads).
_CHUNK_ROWS = 512


class ProfileArray(np.lib.mixins.NDArrayOperatorsMixin):
    """Read-only ``[n_steps, n_elements]`` profile, scaled lazily from a memory-mapped array.

    ``factors`` are applied one after the other, each a scalar or a per-element (column)
    vector, exactly as an eager ``raw * f1 * f2`` would: every element read is bit-identical
    to that product, but only the rows (or columns) indexed are read from disk and scaled.
    ``stats`` holds whole-year reductions of ``raw`` computed when the cache was written
    (``rowsum``, ``colmax``, ``colmin``), so that ``sum(axis=1)`` and ``max/min(axis=0)`` do
    not scan gigabytes; anything else falls back to blockwise or full computation, and
    arithmetic or ufuncs (``0.5 * p``, ``np.abs(p)``) act on the whole array in memory.
    """

    __slots__ = ("_raw", "_factors", "_stats")

    def __init__(
        self,
        raw: np.ndarray,
        factors: tuple[float | np.ndarray, ...] = (),
        stats: dict[str, np.ndarray] | None = None,
    ) -> None:
        self._raw = raw
        self._factors = factors
        self._stats = stats or {}

    def scaled(self, factor: float | np.ndarray) -> ProfileArray:
        """The same profile times ``factor`` (scalar or per element); x 1.0 is dropped (exact)."""
        if np.ndim(factor) == 0:
            if float(factor) == 1.0:
                return self
            f: float | np.ndarray = float(factor)
        else:
            f = np.asarray(factor, dtype=float)
            if f.shape != (self.shape[1],):
                raise ValueError(f"factor of shape {f.shape} for profile of shape {self.shape}")
            if np.all(f == 1.0):
                return self
        return ProfileArray(self._raw, (*self._factors, f), self._stats)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self._raw.shape)  # type: ignore[return-value]

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(float)

    def __len__(self) -> int:
        return int(self._raw.shape[0])

    def __repr__(self) -> str:
        return f"ProfileArray(shape={self.shape}, factors={len(self._factors)})"

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            if len(key) != 2 or any(k is Ellipsis or k is None for k in key):
                raise IndexError("ProfileArray takes [rows] or [rows, columns]")
            rows, cols = key
        else:
            rows, cols = key, slice(None)
        block = np.asarray(self._raw[rows])[..., cols]
        if not self._factors:
            return np.array(block, dtype=float)  # a private copy, never the mapped file
        out = block
        for f in self._factors:
            out = out * (f[cols] if isinstance(f, np.ndarray) else f)
        return np.asarray(out, dtype=float)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole scaled array in memory (gigabytes on the 10k grid: index rows instead).

        Column-major like the arrays SimBench produces (and the eager arrays of earlier
        versions), so that numpy reductions over it sum in the same order, bit for bit.
        """
        out = np.asfortranarray(self[:, :])
        return out if dtype is None else out.astype(dtype)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """Ufuncs and operators on the materialised array (whole year: for small grids)."""
        args = [np.asarray(x) if isinstance(x, ProfileArray) else x for x in inputs]
        return getattr(ufunc, method)(*args, **kwargs)

    def _blocks(self) -> Any:
        for start in range(0, len(self), _CHUNK_ROWS):
            yield self[start : start + _CHUNK_ROWS]

    def _monotone(self) -> bool:
        """True when every factor is >= 0, so that max/min commute with the scaling exactly."""
        return all(np.all(np.asarray(f) >= 0) for f in self._factors)

    def _scale_stat(self, stat: np.ndarray) -> np.ndarray:
        out = stat
        for f in self._factors:
            out = out * f
        return np.array(out, dtype=float)

    def sum(self, axis: int | None = None) -> np.ndarray | float:
        """Sum; per step (``axis=1``) from the stored row sums when unscaled, else blockwise.

        Row sums are taken over column-major blocks: numpy then adds the columns one after the
        other, as it does on SimBench's column-major arrays, so the result is bit-identical to
        the eager whole-year array of earlier versions (a row-major sum is pairwise and
        differs in the last bits).
        """
        if axis in (1, -1):
            if not self._factors and "rowsum" in self._stats:
                return np.array(self._stats["rowsum"], dtype=float)
            return np.concatenate([_row_sums(b) for b in self._blocks()])
        return np.asarray(self).sum(axis=axis)

    def _extreme(self, which: str, axis: int | None) -> np.ndarray | float:
        if axis == 0:
            key = "colmax" if which == "max" else "colmin"
            if key in self._stats and self._monotone():
                return self._scale_stat(self._stats[key])
            reduce = np.maximum if which == "max" else np.minimum
            out = None
            for b in self._blocks():
                part = getattr(b, which)(axis=0)
                out = part if out is None else reduce(out, part)
            return out if out is not None else np.zeros(self.shape[1])
        if axis is None:
            col = self._extreme(which, 0)
            return float(getattr(np.asarray(col), which)()) if np.size(col) else float("nan")
        return np.concatenate([getattr(b, which)(axis=axis) for b in self._blocks()])

    def max(self, axis: int | None = None) -> np.ndarray | float:
        """Maximum; per element (``axis=0``) from the stored column maxima when possible."""
        return self._extreme("max", axis)

    def min(self, axis: int | None = None) -> np.ndarray | float:
        """Minimum; per element (``axis=0``) from the stored column minima when possible."""
        return self._extreme("min", axis)


def _row_sums(block: np.ndarray) -> np.ndarray:
    """Row sums in SimBench's (column-major) summation order; see :meth:`ProfileArray.sum`."""
    return np.asfortranarray(block).sum(axis=1)


def profile_stats(arr: np.ndarray) -> dict[str, np.ndarray]:
    """Whole-year reductions stored with the cache, computed in row blocks (memory bounded)."""
    rowsum = np.empty(arr.shape[0])
    colmax = np.full(arr.shape[1], -np.inf)
    colmin = np.full(arr.shape[1], np.inf)
    for start in range(0, arr.shape[0], _CHUNK_ROWS):
        block = np.asarray(arr[start : start + _CHUNK_ROWS])
        rowsum[start : start + len(block)] = _row_sums(block)
        np.maximum(colmax, block.max(axis=0, initial=-np.inf), out=colmax)
        np.minimum(colmin, block.min(axis=0, initial=np.inf), out=colmin)
    return {"rowsum": rowsum, "colmax": colmax, "colmin": colmin}


def _profile_cache_path(code: str) -> Path:
    key = f"{code}__v{PROFILE_CACHE_VERSION}__pp{pp.__version__}__sb{simbench.__version__}"
    return cache_dir() / "profiles" / key


def _simbench_profiles(code: str, net: Any) -> dict[str, np.ndarray]:
    """Unscaled absolute profiles, from the pre-v2 ``.npz`` cache if any, else from simbench.

    The old cache holds exactly what simbench computed for the same net, so converting it
    once spares the 1.5 min of ``get_absolute_values`` on the 10k grid.
    """
    legacy = cache_dir() / "profiles" / f"{code}.npz"
    if legacy.exists():
        try:
            with np.load(legacy) as data:
                if np.array_equal(data["load_index"], net.load.index.to_numpy()) and (
                    np.array_equal(data["sgen_index"], net.sgen.index.to_numpy())
                ):
                    log.info("converting profile cache %s to memory-mappable .npy", legacy)
                    return {k: data[k] for k, _, _ in PROFILE_KEYS}
        except Exception as exc:
            log.warning("ignoring unreadable profile cache %s: %s", legacy, exc)
    log.info("computing SimBench profiles of %s (cached afterwards)", code)
    absolute = simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)
    out = {}
    for key, table, col in PROFILE_KEYS:
        df = absolute[(table, col)].reindex(columns=net[table].index)
        arr = df.to_numpy(dtype=float)
        static = net[table][col].to_numpy(dtype=float)
        out[key] = np.where(np.isnan(arr), static[None, :], arr)  # no profile -> constant
    return out


def _read_profile_cache(path: Path, net: Any) -> dict[str, ProfileArray] | None:
    """The memory-mapped cache in ``path`` if complete and made for this net, else None."""
    meta_path = path / "meta.npz"
    if not meta_path.exists():  # written last: its absence means no (complete) cache
        return None
    try:
        with np.load(meta_path) as meta:
            if not (
                np.array_equal(meta["load_index"], net.load.index.to_numpy())
                and np.array_equal(meta["sgen_index"], net.sgen.index.to_numpy())
            ):
                log.warning("profile cache %s does not match the net; rebuilding", path)
                return None
            stats = {
                k: {s: meta[f"{k}_{s}"] for s in ("rowsum", "colmax", "colmin")}
                for k, _, _ in PROFILE_KEYS
            }
        out = {}
        for key, table, _ in PROFILE_KEYS:
            arr = np.load(path / f"{key}.npy", mmap_mode="r")
            if arr.dtype != np.float64 or arr.shape != (N_PROFILE_STEPS, len(net[table])):
                log.warning("profile cache %s has a wrong shape; rebuilding", path)
                return None
            out[key] = ProfileArray(arr, (), stats[key])
        return out
    except Exception as exc:  # a corrupt cache must not stop a run
        log.warning("ignoring unreadable profile cache %s: %s", path, exc)
        return None


def raw_profiles(code: str, net: Any, use_cache: bool = True) -> dict[str, ProfileArray]:
    """Unscaled absolute profiles, memory-mapped from the disk cache (written on first use).

    Every file is written atomically and ``meta.npz`` last, so a reader sees either a
    complete cache or none; the directory name carries the cache format and the pandapower
    and simbench versions, so a stale cache is never read.
    """
    path = _profile_cache_path(code)
    if use_cache:
        cached = _read_profile_cache(path, net)
        if cached is not None:
            return cached
    raw = _simbench_profiles(code, net)
    if not use_cache:
        return {k: ProfileArray(v, (), profile_stats(v)) for k, v in raw.items()}
    meta: dict[str, np.ndarray] = {
        "load_index": net.load.index.to_numpy(),
        "sgen_index": net.sgen.index.to_numpy(),
    }
    for key, arr in raw.items():
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        atomic_write(path / f"{key}.npy", lambda fh, a=arr: np.save(fh, a))
        meta.update({f"{key}_{s}": v for s, v in profile_stats(arr).items()})
    atomic_write(path / "meta.npz", lambda fh: np.savez(fh, **meta))
    del raw
    cached = _read_profile_cache(path, net)
    if cached is None:
        raise RuntimeError(f"profile cache {path} unreadable right after writing it")
    return cached
