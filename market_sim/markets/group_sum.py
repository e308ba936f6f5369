"""Sums per key as a pandas groupby makes them, in numpy.

The markets have always summed per bid, per offer step or per party with a pandas groupby,
whose sum is compensated (Kahan) in row order and skips NaN. A period's tables have a few
hundred rows, where one groupby costs a few hundred microseconds of pandas bookkeeping and the
arithmetic nothing; :func:`group_sum` does the same arithmetic in numpy, so the sums stay the
same to the last bit.
"""

from __future__ import annotations

import numpy as np

#: Groups still being summed below which :func:`group_sum` finishes each in a Python loop.
FEW_GROUPS = 16


def group_sum(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``keys`` (sorted) and the sum of ``values`` of each.

    What ``pd.Series(values).groupby(keys).sum()`` gives for integer keys: each group summed
    in row order with Kahan compensation from 0.0, NaN skipped (a group of only NaN sums to
    0.0). The groups are summed side by side, one numpy step per row; once only a few long
    groups are left (the TSO's or an aggregator's settlement rows), each is finished on its
    own in Python floats, the same IEEE arithmetic, at a fraction of a step per row.
    """
    keys, values = np.asarray(keys), np.asarray(values, dtype=float)
    order = np.argsort(keys, kind="stable")  # row order within a key
    distinct, start, count = np.unique(keys[order], return_index=True, return_counts=True)
    ordered = values[order]
    total, compensation = np.zeros(len(distinct)), np.zeros(len(distinct))
    for step in range(count.max(initial=0)):
        group = np.flatnonzero(count > step)
        if len(group) <= FEW_GROUPS:
            for g in group:
                rest = ordered[start[g] + step : start[g] + count[g]]
                total[g], compensation[g] = _kahan(rest, total[g], compensation[g])
            break
        value = ordered[start[group] + step]
        known = ~np.isnan(value)
        group, value = group[known], value[known]
        with np.errstate(invalid="ignore"):  # inf - inf: an infinite value, not a NaN sum
            y = value - compensation[group]
            t = total[group] + y
            c = t - total[group] - y
        compensation[group] = np.where(np.isnan(c), 0.0, c)
        total[group] = t
    return distinct, total


def _kahan(values: np.ndarray, total: float, compensation: float) -> tuple[float, float]:
    """``values`` added to a compensated sum in row order, as pandas' groupby loop does."""
    total, compensation = float(total), float(compensation)
    for value in values.tolist():
        if value != value:  # NaN is skipped
            continue
        y = value - compensation
        t = total + y
        compensation = t - total - y
        if compensation != compensation:  # an infinite value: no NaN sum
            compensation = 0.0
        total = t
    return total, compensation


def sums_at(keys: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The :func:`group_sum` of each key in ``at`` (0.0 where a key has no rows)."""
    distinct, total = group_sum(keys, values)
    at = np.asarray(at, dtype=distinct.dtype if len(distinct) else np.int64)
    pos = np.searchsorted(distinct, at)
    found = pos < len(distinct)
    found[found] = distinct[pos[found]] == at[found]
    out = np.zeros(len(at))
    out[found] = total[pos[found]]
    return out
