"""A year of SimBench profiles, stored as profile types x per-element factors, scaled lazily.

A year of absolute profiles is large (35,136 steps x 14,589 loads is 4.1 GB per array on the
10k-bus MV-LV grid), but SimBench builds it as ``relative[:, type of element] * rated power``
from a few dozen profile types. :class:`CompactProfile` keeps exactly those two factors and
multiplies them the way SimBench does (one float64 product per value), so every value read is
bit-identical to SimBench's absolute array while the cache holds megabytes, not gigabytes.
:class:`ProfileArray` applies the scenario's scaling lazily, only to the rows a caller reads.
Whole-year reductions the model needs (row sums, column maxima) are computed once when the
cache is written and stored with it (:mod:`.profile_cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: SimBench profiles cover the leap year 2016 in 15-minute steps.
N_PROFILE_STEPS = 35136

#: Profile arrays every DistributionNetwork carries: (key, pandapower table, column).
PROFILE_KEYS = (
    ("load_p", "load", "p_mw"),
    ("load_q", "load", "q_mvar"),
    ("sgen_p", "sgen", "p_mw"),
)

#: Rows per block when a whole-year reduction has to be computed (8 MB blocks on 10k loads).
_CHUNK_ROWS = 512


@dataclass(frozen=True)
class CompactProfile:
    """An absolute ``[n_steps, n_elements]`` profile as ``types[:, type_of] * factor``.

    ``types`` are the relative profiles SimBench applies (one column per profile name, a
    column of ones for elements without a profile, NaN steps replaced by 1 so that they read
    as the element's static value, as the uncompressed cache did), ``type_of`` the column of
    each element, ``factor`` its rated value (``p_mw`` or ``q_mvar``).
    """

    types: np.ndarray
    type_of: np.ndarray
    factor: np.ndarray

    @classmethod
    def dense(cls, values: np.ndarray) -> CompactProfile:
        """An arbitrary array as a profile of its own (one type per element, factor 1: exact)."""
        n = values.shape[1]
        return cls(np.ascontiguousarray(values, dtype=float), np.arange(n), np.ones(n))

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.types.shape[0]), int(self.type_of.shape[0]))

    def take(self, rows: Any, cols: Any = slice(None)) -> np.ndarray:
        """Values at ``rows`` (int, slice or index array) and ``cols``, as SimBench computes."""
        return np.asarray(self.types[rows])[..., self.type_of[cols]] * self.factor[cols]


class ProfileArray(np.lib.mixins.NDArrayOperatorsMixin):
    """Read-only ``[n_steps, n_elements]`` profile, scaled lazily from a :class:`CompactProfile`.

    ``factors`` are applied one after the other, each a scalar or a per-element (column)
    vector, exactly as an eager ``raw * f1 * f2`` would: every element read is bit-identical
    to that product, but only the rows (or columns) indexed are computed and scaled.
    ``stats`` holds whole-year reductions of ``raw`` computed when the cache was written
    (``rowsum``, ``colmax``, ``colmin``), so that ``sum(axis=1)`` and ``max/min(axis=0)`` do
    not scan gigabytes; anything else falls back to blockwise or full computation, and
    arithmetic or ufuncs (``0.5 * p``, ``np.abs(p)``) act on the whole array in memory.
    """

    __slots__ = ("_raw", "_factors", "_stats")

    def __init__(
        self,
        raw: CompactProfile,
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
        return self._raw.shape

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(float)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ProfileArray(shape={self.shape}, factors={len(self._factors)})"

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            if len(key) != 2 or any(k is Ellipsis or k is None for k in key):
                raise IndexError("ProfileArray takes [rows] or [rows, columns]")
            rows, cols = key
        else:
            rows, cols = key, slice(None)
        out = self._raw.take(rows, cols)  # a fresh array: callers may write into it
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


def profile_stats(arr: CompactProfile) -> dict[str, np.ndarray]:
    """Whole-year reductions stored with the cache, computed in row blocks (memory bounded)."""
    rowsum = np.empty(arr.shape[0])
    colmax = np.full(arr.shape[1], -np.inf)
    colmin = np.full(arr.shape[1], np.inf)
    for start in range(0, arr.shape[0], _CHUNK_ROWS):
        block = arr.take(slice(start, start + _CHUNK_ROWS))
        rowsum[start : start + len(block)] = _row_sums(block)
        np.maximum(colmax, block.max(axis=0, initial=-np.inf), out=colmax)
        np.minimum(colmin, block.min(axis=0, initial=np.inf), out=colmin)
    return {"rowsum": rowsum, "colmax": colmax, "colmin": colmin}
