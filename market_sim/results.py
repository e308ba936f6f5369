"""Results: the tables of a run, their documented columns, and the run folder on disk.

A run folder holds ``config.yaml`` (the resolved config of that run), ``run.json`` (status,
last completed period, seed, package versions, wall time) and one parquet dataset per table:
``<table>/part-00000.parquet``, one file per chunk of periods, in period order. A chunk's
files are written under a temporary name and renamed, so a reader (``load_results``, or
``pd.read_parquet(folder / "bids")`` directly) never sees half a file; ``load_results`` also
refuses a folder whose run did not complete, unless asked. Every column's unit is in its name
or in :data:`market_sim.tables.TABLES`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from market_sim.columns import column_values
from market_sim.files import atomic_write, atomic_write_text
from market_sim.tables import TABLES

RUN_INFO = "run.json"
#: A run's status in ``run.json``: ``pending`` (a model of the scenario not started yet),
#: ``running`` (or killed while running), ``interrupted`` (Ctrl-C), ``failed``, ``complete``.
STATUSES = ("pending", "running", "interrupted", "failed", "complete")


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked: its message is one line for the user."""


#: Rows a table's blocks have on average from which they go to Arrow unjoined
#: (:meth:`TableBuffer.arrow`): about where a copy of a block costs as much as an Arrow
#: chunk's own overhead (a few microseconds per block and column, converted and written).
CHUNK_ROWS = 2000


@dataclass(frozen=True)
class Runs:
    """A column of runs of one value each: a block's constant (the period, a DSO's name) is
    one run, such columns of several blocks joined are several. Kept as values and counts
    until the chunk is converted, where a run costs one value converted, not one per row:
    text goes to Arrow one Python string at a time, so a chunk's DSO names, one per row,
    cost as much as its element names."""

    values: tuple
    counts: tuple[int, ...]

    def __len__(self) -> int:
        return sum(self.counts)

    def array(self) -> np.ndarray:
        """The column as numpy values, each run as :func:`_constant` repeats its value."""
        runs = zip(self.values, self.counts, strict=True)
        return np.concatenate([_constant(n, value) for value, n in runs])

    def arrow(self, arrow_type: pa.DataType, dtype: str) -> pa.Array:
        """The column as an Arrow array of its documented type, converted as
        :func:`_arrow_column` converts the repeated values: numbers repeated by numpy, text
        (Python objects) converted one row per run, each value on its own, then repeated by
        Arrow, which copies bytes, not Python strings."""
        first = np.concatenate([_constant(1, value) for value in self.values])
        if first.dtype != object:
            return _arrow_column(np.repeat(first, self.counts), arrow_type, dtype)
        rows = np.repeat(np.arange(len(first), dtype=np.int32), self.counts)
        return _arrow_column(first, arrow_type, dtype).take(rows)


#: A block's column: an array of its rows, or runs of one value each.
Column = np.ndarray | Runs


class TableBuffer:
    """One table's rows, kept as column arrays until the table is taken.

    A period adds a few blocks of rows to a table; building a DataFrame per block and
    concatenating DataFrames per chunk cost more than the stages that computed the rows. So a
    block is kept as one array per column, single rows (a timing, an event) as tuples, and the
    table is built once, from one concatenation per column, as an Arrow table of the
    documented schema: what a chunk's parquet file is written from, and what a DataFrame for a
    notebook is read from (so that both have the same values and dtypes).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.columns = tuple(TABLES[name])
        #: blocks of rows, each one column per column name, in the order they were added
        self.blocks: list[dict[str, Column]] = []
        #: single rows (values in column order) added since the last block
        self.rows: list[tuple] = []

    def add_row(self, values: tuple) -> None:
        """One row, its values in the table's column order."""
        self.rows.append(values)

    def add_block(self, columns: Mapping[str, Column]) -> None:
        """Rows given as one column (an array, or :class:`Runs`) per column of the table,
        all of one length."""
        self._flush_rows()
        self.blocks.append({c: columns[c] for c in self.columns})

    def _flush_rows(self) -> None:
        """Turn the pending single rows into a block (column dtypes inferred from the values,
        as a DataFrame of named rows infers them), so that blocks and rows keep their order."""
        if self.rows:
            frame = pd.DataFrame(self.rows, columns=list(self.columns))
            self.rows = []
            self.blocks.append({c: frame[c].to_numpy() for c in self.columns})

    def arrow(self) -> pa.Table:
        """The rows so far as an Arrow table of the documented schema; the buffer keeps them.

        Blocks of :data:`CHUNK_ROWS` rows or more on average (a clearing's coefficients, the
        bids) go to Arrow as they are, one chunk each: joining them first copied a chunk's
        largest tables once more, for nothing, since Arrow takes a number column without a
        copy and converts text block by block at the same cost. Smaller blocks are joined,
        where one conversion costs less than one per block (constants stay runs:
        :func:`joined`); the joined block is kept, so that asking again does not join them
        again. The values are the same either way.
        """
        self._flush_rows()
        if not self.blocks:
            return schema(self.name).empty_table()
        if sum(len(b[self.columns[0]]) for b in self.blocks) < CHUNK_ROWS * len(self.blocks):
            self.blocks = [{c: joined([b[c] for b in self.blocks]) for c in self.columns}]
        return chunked_arrow_table(self.name, self.blocks)

    def frame(self) -> pd.DataFrame:
        """The rows so far as one DataFrame with the documented dtypes."""
        return self.arrow().to_pandas()

    def clear(self) -> None:
        self.blocks = []
        self.rows = []


class Recorder:
    """Collects a run's rows per table; tables become DataFrames with the documented dtypes.

    Rows arrive, in the order they happen, as column arrays (:meth:`add_columns`,
    :meth:`add_frame`), as single rows (:meth:`add_row`) or as named rows (:meth:`add`).
    """

    def __init__(self) -> None:
        self.buffers = {name: TableBuffer(name) for name in TABLES}

    def add(self, table: str, rows: list[dict] | pd.DataFrame) -> None:
        """Add rows: a list of named rows (a missing column is NaN), or a DataFrame with the
        table's columns."""
        if isinstance(rows, pd.DataFrame):
            self.add_frame(table, rows)
            return
        buffer = self.buffers[table]
        for row in rows:
            buffer.add_row(tuple(row.get(c, np.nan) for c in buffer.columns))

    def add_row(self, table: str, values: tuple) -> None:
        """One row, its values in the table's column order (:data:`TABLES`): the cheap way for
        tables that grow a row at a time (timings, events)."""
        self.buffers[table].add_row(values)

    def add_columns(self, table: str, columns: Mapping[str, Any], **constants: Any) -> None:
        """Rows given as arrays, one per column, of equal length, and ``constants`` (the
        period, a DSO's name) repeated over them (kept as :class:`Runs`); no rows if the
        arrays are empty. The arrays are copied: the stage that made them may change them
        later."""
        arrays = {c: column_array(v) for c, v in columns.items()}
        n = len(next(iter(arrays.values())))
        if any(len(a) != n for a in arrays.values()):
            lengths = {c: len(a) for c, a in arrays.items()}
            raise ValueError(f"{table}: columns of unequal lengths {lengths}")
        if n == 0:
            return
        block: dict[str, Column] = arrays | {c: Runs((v,), (n,)) for c, v in constants.items()}
        self.buffers[table].add_block(block)

    def add_frame(self, table: str, frame: pd.DataFrame, **constants: Any) -> None:
        """The rows of a DataFrame with the table's columns (others are left out), and
        ``constants`` as in :meth:`add_columns`."""
        if len(frame) == 0:
            return
        wanted = [c for c in self.buffers[table].columns if c not in constants]
        self.add_columns(table, {c: column_values(frame, c) for c in wanted}, **constants)

    def table(self, name: str) -> pd.DataFrame:
        """Table ``name`` of the rows so far, with its documented dtypes."""
        return self.buffers[name].frame()

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: self.table(name) for name in TABLES}

    def arrow_tables(self) -> dict[str, pa.Table]:
        """Every table of the rows so far as an Arrow table of its documented schema: what a
        chunk is written from, without a DataFrame in between."""
        return {name: buffer.arrow() for name, buffer in self.buffers.items()}

    def clear(self) -> None:
        """Forget the rows collected so far (written to disk): memory stays flat in long runs."""
        for buffer in self.buffers.values():
            buffer.clear()


def _constant(n: int, value: Any) -> np.ndarray:
    """``value`` repeated ``n`` times; text as one Python string referred to ``n`` times
    (``np.full`` made a string object per row, each then joined, converted and freed)."""
    if not isinstance(value, str):
        return np.full(n, value)
    column = np.empty(n, dtype=object)
    column[:] = value
    return column


def arrow_table(table: str, columns: Mapping[str, np.ndarray]) -> pa.Table:
    """Columns of ``table`` (numpy arrays, all of one length) as an Arrow table of its
    documented schema."""
    return chunked_arrow_table(table, [columns])


def joined(columns: list[Column]) -> Column:
    """One column of several blocks: runs where every block has runs (a constant costs no
    array until it is converted), else the blocks' arrays joined."""
    if all(isinstance(c, Runs) for c in columns):
        values = itertools.chain.from_iterable(c.values for c in columns)
        counts = itertools.chain.from_iterable(c.counts for c in columns)
        return Runs(tuple(values), tuple(counts))
    return np.concatenate([_array(c) for c in columns])


def _array(column: Column) -> np.ndarray:
    """A block's column as a numpy array (runs repeated)."""
    return column.array() if isinstance(column, Runs) else column


def chunked_arrow_table(table: str, blocks: list[Mapping[str, Column]]) -> pa.Table:
    """Blocks of rows of ``table`` (each one column per column name, of one length) as one
    Arrow table of its documented schema, each block a chunk of its columns.

    A column is converted block by block only where every block has its documented type
    already (then each block's values are what the joined column's would be); any other
    is joined first and converted as :func:`arrow_table` converts it, since how pandas
    converts a value may depend on the other values of its column. A column of runs in
    every block is converted as one chunk of runs (:meth:`Runs.arrow`).
    """
    fields = schema(table)
    columns = []
    for f in fields:
        dtype = TABLES[table][f.name][0]
        values = [b[f.name] for b in blocks]
        if all(isinstance(v, Runs) for v in values):
            columns.append(pa.chunked_array([joined(values).arrow(f.type, dtype)]))
            continue
        values = [_array(v) for v in values]
        if len(values) > 1 and not all(_has_type(v, dtype) for v in values):
            values = [np.concatenate(values)]
        columns.append(pa.chunked_array([_arrow_column(v, f.type, dtype) for v in values]))
    return pa.Table.from_arrays(columns, schema=fields)


def _has_type(values: np.ndarray, dtype: str) -> bool:
    """Whether a column's values have its documented type as they are (text: Python
    objects)."""
    return values.dtype == object if dtype == "string" else values.dtype == np.dtype(dtype)


def _arrow_column(values: np.ndarray, arrow_type: pa.DataType, dtype: str) -> pa.Array:
    """A joined column as an Arrow array of its documented type, with the values that
    ``pd.Series(values).astype(dtype)`` written by ``pa.Table.from_pandas`` has (NaN as null).

    A column that already has the documented type (numbers as their numpy dtype, text as
    Python strings and missing values) goes to Arrow as it is; any other is converted as
    ``DataFrame.astype`` converts it (an error where a value does not fit).
    """
    if _has_type(values, dtype):
        with contextlib.suppress(pa.ArrowTypeError):  # objects that are not all text
            return pa.array(values, type=arrow_type, from_pandas=True)
    typed = pd.Series(values, copy=False).astype(dtype)
    return pa.array(typed, type=arrow_type, from_pandas=True)


def column_array(values: Any) -> np.ndarray:
    """A copy of a column's values as a numpy array; text as Python strings (object), as
    pandas holds it, never numpy's fixed-width unicode."""
    array = np.array(values)
    return array.astype(object) if array.dtype.kind == "U" else array


PACKAGES = (
    "market_sim",
    "mesa",
    "simpy",
    "pandapower",
    "simbench",
    "lightsim2grid",
    "numba",
    "numpy",
    "pandas",
    "pyarrow",
    "pyomo",
    "highspy",
    "pydantic",
)


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's numbers."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@functools.cache
def schema(table: str) -> pa.Schema:
    """The parquet schema of ``table``, from its documented dtypes, with the pandas metadata
    ``pa.Table.from_pandas`` gives it (pandas reads text back as ``string``, not object):
    every chunk's file has it, an empty chunk's too, so that the files of a dataset always
    read back as one table."""
    types = {"bool": pa.bool_(), "float32": pa.float32(), "float64": pa.float64()}
    types |= {"int64": pa.int64(), "string": pa.string()}
    columns = TABLES[table]
    plain = pa.schema([(c, types[t]) for c, (t, _) in columns.items()])
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, (t, _) in columns.items()})
    return pa.Table.from_pandas(empty, schema=plain, preserve_index=False).schema


def frame_to_arrow(table: str, frame: pd.DataFrame) -> pa.Table:
    """A DataFrame with the columns of ``table`` as an Arrow table of its schema."""
    columns = list(TABLES[table])
    return pa.Table.from_pandas(frame[columns], schema=schema(table), preserve_index=False)


def write_part(folder: Path, table: str, index: int, arrow: pa.Table) -> None:
    """Chunk ``index`` of ``table`` (an Arrow table of its schema) as one parquet file of its
    dataset folder. Only text is dictionary-encoded and only the period has statistics:
    hashing every number of a chunk took half its writing time, and a reader picks periods,
    not values; the values read back are the same either way."""
    if not arrow.schema.equals(schema(table), check_metadata=True):
        raise ValueError(f"{table}: chunk's schema {arrow.schema} is not the table's")
    text = [f.name for f in arrow.schema if f.type == pa.string()]
    options = {"use_dictionary": text, "write_statistics": ["period"]}
    atomic_write(folder / table / part_name(index), lambda fh: pq.write_table(arrow, fh, **options))


def parts(folder: Path, table: str) -> list[Path]:
    """The chunk files of a table, in chunk (period) order."""
    return sorted((folder / table).glob("part-*.parquet"))


def read_table(
    folder: Path, table: str, columns: list[str] | None = None, chunks: int | None = None
) -> pd.DataFrame:
    """One table of a run folder (optionally some of its columns, or its first ``chunks``
    chunks only), with its documented dtypes."""
    files = parts(folder, table)[:chunks]
    wanted = columns or list(TABLES[table])
    arrow = pa.concat_tables(
        [pq.read_table(f, columns=wanted) for f in files] or [schema(table).empty_table()]
    ).select(wanted)
    dtypes = {c: t for c, (t, _) in TABLES[table].items() if c in wanted}
    return arrow.to_pandas().astype(dtypes)


def read_run_info(folder: Path) -> dict:
    """``run.json`` of a run folder."""
    path = folder / RUN_INFO
    if not path.is_file():
        raise RunFolderError(f"{folder}: not a run folder (no {RUN_INFO})")
    return json.loads(path.read_text())


def write_run_info(folder: Path, info: dict) -> None:
    """``run.json``, replaced whole (never seen half written)."""
    atomic_write_text(folder / RUN_INFO, json.dumps(info, indent=2, sort_keys=True) + "\n")


def write_run(folder: Path, config_yaml: str, run_info: dict, tables: dict[str, pd.DataFrame]):
    """Write a whole run folder at once (tables held in memory): config.yaml, the tables as
    one chunk, and run.json, last, saying it is complete."""
    atomic_write_text(folder / "config.yaml", config_yaml)
    for name, table in tables.items():
        write_part(folder, name, 0, frame_to_arrow(name, table))
    info = {"status": "complete", **run_info, "packages": package_versions()}
    write_run_info(folder, info)


def markdown_table(table: pd.DataFrame, floatfmt: str = ",.1f") -> str:
    """A DataFrame as a GitHub markdown table (index as the first column), numbers formatted
    with ``floatfmt``; NaN shown as "n/a" (a figure that was not measured is not 0)."""

    def cell(value: object) -> str:
        if isinstance(value, float | int) and not isinstance(value, bool):
            return "n/a" if pd.isna(value) else format(value, floatfmt)
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = [str(table.index.name or ""), *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in table.iterrows():
        lines.append("| " + " | ".join([cell(index), *map(cell, row.tolist())]) + " |")
    return "\n".join(lines) + "\n"


def write_summary(folder: Path, summary: dict[str, float], links: pd.DataFrame) -> None:
    """``summary.csv`` (name, value: the run's summary, then messages and bytes per link) and
    ``summary.md`` (the same as two tables) in a run folder, so a run reads without Python."""
    per_link = {f"messages: {r.link}": r.messages for r in links.itertuples()}
    per_link |= {f"bytes: {r.link}": r.bytes for r in links.itertuples()}
    rows = {name.strip(): float(v) for name, v in {**summary, **per_link}.items()}
    table = pd.DataFrame({"name": list(rows), "value": list(rows.values())})
    table.to_csv(folder / "summary.csv", index=False)
    totals = pd.DataFrame({"value": pd.Series(summary, dtype=float)}).rename_axis("summary")
    link_table = links.set_index("link").astype(float)
    text = f"{markdown_table(totals)}\n{markdown_table(link_table, ',.0f')}"
    (folder / "summary.md").write_text(text)


def load_results(
    path: str | Path, allow_incomplete: bool = False, tables: Iterable[str] | None = None
) -> dict[str, pd.DataFrame]:
    """The tables of a run folder as DataFrames, keyed by table name: every table, or those
    named in ``tables`` (a long run's or a large network's tables may not fit in memory
    together: two days of tso_managed on the 10k-bus grid hold 660 million coefficients).

    A run that did not complete (killed, interrupted, failed) is refused unless
    ``allow_incomplete``: its tables then hold the chunks completed so far (maybe none), the
    same periods in every table (files of a chunk cut by a crash are left out).
    """
    names = list(TABLES) if tables is None else list(tables)
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise ValueError(f"tables: got {unknown}; allowed: the tables {list(TABLES)}")
    path = Path(path)
    info = read_run_info(path)
    status = info.get("status")
    if status != "complete" and not allow_incomplete:
        raise RunFolderError(
            f"{path}: the run's status is {status!r}, not 'complete'; resume it with "
            f"market-sim run --resume {path}, or pass allow_incomplete=True"
        )
    missing = [n for n in TABLES if not parts(path, n)]
    if missing and not allow_incomplete:
        raise FileNotFoundError(f"{path} is not a run folder: missing {missing}")
    chunks = None if status == "complete" else info.get("chunks", 0)
    return {name: read_table(path, name, chunks=chunks) for name in names}
