"""A period's tables read as numpy columns, and rows looked up by key without an index.

The stages after the clearing (delivery, settlement, KPIs) hand on a few hundred rows per
period. Built and read as pandas tables, their columns cost more than the arithmetic on them:
reading a text column with ``to_numpy`` scans it for missing values, ``table.name`` resolves
an attribute, ``pd.Index(...).get_indexer`` builds a hash table for one lookup. So these
stages hand on plain arrays (:data:`Columns`) and read a pandas table's columns as arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pandas.core.internals.managers import create_block_manager_from_column_arrays

#: A table's columns by name: a DataFrame, or a mapping of numpy arrays.
Columns = Mapping[str, Any]


def array_of(table: Columns, name: str) -> Any:
    """A column's own values: a DataFrame's array as the frame holds it (a numpy array, or
    the pandas array ``Series.array`` would be: pandas strings, a categorical), without the
    Series that ``table[name]`` boxes it in, which costs more than reading it; a mapping's
    value as it is. Read, never written: it is the table's."""
    if isinstance(table, pd.DataFrame):
        return table._get_column_array(table.columns.get_loc(name))
    return table[name]


def column_values(table: Columns, name: str) -> np.ndarray:
    """A column's values as a numpy array, as the table holds them where it holds a numpy
    array: what ``to_numpy()`` returns for the tables' dtypes (numbers, flags, text,
    categories), read from the frame's own array (:func:`array_of`) without the scan for
    missing values that text's ``to_numpy`` makes (text as Python strings and ``pd.NA``
    either way)."""
    return np.asarray(array_of(table, name))


def text(table: Columns, name: str) -> np.ndarray:
    """A text column as an object array of its values (pandas strings hold one already; it
    is theirs, so it is read, never written), without the scan for missing values that
    ``to_numpy`` makes: missing values stay ``pd.NA`` either way."""
    return np.asarray(array_of(table, name), dtype=object)


def length(table: Columns) -> int:
    """The number of rows of ``table`` (``len`` of a mapping counts its columns)."""
    if isinstance(table, pd.DataFrame):
        return len(table)
    return len(next(iter(table.values()))) if len(table) else 0


def numbers(table: Columns, name: str, dtype: Any = float) -> np.ndarray:
    """A numeric column as an array of ``dtype`` (no copy where it has that dtype): what a
    pandas column's ``to_numpy(dtype)`` gives, read from the frame's own array."""
    return np.asarray(array_of(table, name), dtype=dtype)


def positions(index: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The position of each of ``keys`` in ``index`` (whose values are unique), -1 where it is
    absent: ``pd.Index(index).get_indexer(keys)``, by a binary search of the sorted index."""
    index, keys = np.asarray(index), np.asarray(keys)
    if not len(index):
        return np.full(len(keys), -1, dtype=np.intp)
    order = np.argsort(index, kind="stable")
    at = order[np.minimum(np.searchsorted(index, keys, sorter=order), len(index) - 1)]
    return np.where(index[at] == keys, at, -1)


def reindexed(values: pd.Series, index: Any) -> np.ndarray:
    """``values.reindex(index).to_numpy(float)`` of unique labels, by position
    (:func:`positions`), without the index a reindex builds: a schedule's outputs, read at
    the generators every period, come with an index of their own. Where that index equals
    ``index`` (the TSO's schedules are indexed by its generators, in order), the values are
    read as they are: a reindex cost a quarter of the TER offers' arithmetic."""
    if values.index.equals(index):
        return values.to_numpy(dtype=float, copy=True)  # new, as a reindex's
    at = positions(np.asarray(values.index, dtype=object), np.asarray(index, dtype=object))
    out = np.full(len(at), np.nan)
    out[at >= 0] = values.to_numpy(dtype=float)[at[at >= 0]]
    return out


def distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, without its second pass over the rows.

    Strings are hashed before they are sorted: a period's few thousand rows name a few
    hundred parties, and sorting only those is about ten times faster than sorting every
    row's string. Numbers (group keys) are sorted once: 10 us against numpy's 41 and the
    hash's 16 on a period's few hundred keys."""
    if values.dtype.kind in "iub":
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        first = np.empty(len(values), dtype=bool)
        first[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        rank = np.empty(len(values), dtype=np.int64)
        rank[order] = np.cumsum(first) - 1
        return ordered[first], rank
    codes, found = pd.factorize(values)
    order = np.argsort(found)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return found[order], rank[codes]


def concat_frames(frames: list[Columns]) -> pd.DataFrame:
    """``pd.concat(frames, ignore_index=True)`` (of tables, or of the tables of columns
    mappings hold): for tables of the same (unique) columns with the same dtypes and no frame
    attributes (the engine's messages and row labels), by the concatenation it makes of each
    column (numpy's, or the pandas array type's own for pandas strings and categoricals),
    without its planning of blocks and indices, which costs more than the copying on tables
    of a few hundred rows; any other tables by ``pd.concat``, which aligns and converts them."""
    joined = _joined(frames)
    if joined is not None:
        return joined
    return pd.concat([as_frame(t) for t in frames], ignore_index=True)


def as_frame(table: Columns) -> pd.DataFrame:
    """``table`` as a DataFrame: a frame as it is, a mapping's columns in a new frame (on the
    mapping's arrays, which it does not copy: neither is written)."""
    return table if isinstance(table, pd.DataFrame) else pd.DataFrame(table, copy=False)


def _joined(frames: list[Columns]) -> pd.DataFrame | None:
    """:func:`concat_frames` by columns; None where the tables do not allow it."""
    names = list(frames[0])  # a frame's column names, a mapping's keys
    if len(set(names)) < len(names):
        return None
    if any(getattr(t, "attrs", None) or list(t) != names for t in frames):
        return None
    columns = {}
    for name in names:
        parts = [array_of(t, name) for t in frames]
        if any(p.dtype != parts[0].dtype for p in parts[1:]):
            return None
        if isinstance(parts[0], np.ndarray):
            columns[name] = np.concatenate(parts)
        else:
            columns[name] = type(parts[0])._concat_same_type(parts)
    return new_frame(columns)


def new_frame(columns: Columns) -> pd.DataFrame:
    """A table of ``columns``: new, equally long one-dimensional arrays (numpy arrays or
    pandas arrays) that nothing else holds, taken as they are, one block each.

    ``pd.DataFrame(columns, copy=False)`` gives the same table (a test compares them) but
    checks every array again, infers the index from their lengths and copies the columns of
    each dtype into one two-dimensional block. That copy was most of the cost of the ~8
    tables a period builds (0.55 against 0.15 ms a tso_managed period, hot; 93 against 14 us
    for the TSO's validation table, 4 columns of 514 rows), and a new index of the column
    names another 14 us. The stages read these tables by column, where a block per column
    costs nothing; pandas consolidates a table itself where an operation wants it.
    """
    if not columns:
        return pd.DataFrame()
    arrays = list(columns.values())
    axes = [_names(tuple(columns)).view(), pd.RangeIndex(len(arrays[0]))]
    manager = create_block_manager_from_column_arrays(
        arrays, axes, consolidate=False, refs=[None] * len(arrays)
    )
    return pd.DataFrame._from_mgr(manager, axes=manager.axes)


@functools.lru_cache(maxsize=256)
def _names(names: tuple[str, ...]) -> pd.Index:
    """The column labels of a table with ``names``, made once per set of names; each table
    takes a view of them (1 us), whose name it may set without renaming the others'."""
    return pd.Index(list(names), dtype=object)


def columns_where(table: Columns, column: str, value: Any) -> dict[str, Any]:
    """The columns of :func:`rows_where`'s table (new arrays, of the table's own array
    types), for a receiver that only joins or reads them: the rows taken from each column
    cost a fraction of a table of them."""
    rows = np.flatnonzero(text(table, column) == value)
    return {name: array_of(table, name)[rows] for name in table}


def rows_where(table: pd.DataFrame, column: str, value: Any) -> pd.DataFrame:
    """The rows of ``table`` whose ``column`` is ``value``, indexed from 0: a message's
    payload. Taken by position, which costs half of a boolean index on a table of bids."""
    rows = np.flatnonzero(text(table, column) == value)
    out = table.take(rows)
    out.index = pd.RangeIndex(len(rows))  # a new table already: reset_index would copy it
    return out
