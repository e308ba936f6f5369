"""Results: the tables of a run, their documented columns, and the run folder on disk.

A run folder holds ``config.yaml`` (the resolved config of that run), ``run.json`` (seed,
package versions, wall time) and one parquet file per table below. ``load_results(path)`` reads
them back as DataFrames. Every column's unit is in its name or in
:data:`market_sim.tables.TABLES`.
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from market_sim.tables import TABLES


class Recorder:
    """Collects a run's rows per table; tables become DataFrames with the documented dtypes.

    Rows arrive as named rows (mappings from column names to values) or as DataFrames with the
    table's columns, in the order they happen.
    """

    def __init__(self) -> None:
        self.parts: dict[str, list[pd.DataFrame | list[dict]]] = {name: [] for name in TABLES}

    def add(self, table: str, rows: list[dict] | pd.DataFrame) -> None:
        """Add rows: a list of named rows, or a DataFrame with the table's columns."""
        if len(rows):
            self.parts[table].append(rows)

    def table(self, name: str) -> pd.DataFrame:
        columns = TABLES[name]
        frames = [
            p if isinstance(p, pd.DataFrame) else pd.DataFrame(p, columns=list(columns))
            for p in self.parts[name]
        ]
        frames = [f[list(columns)] for f in frames]
        empty = pd.DataFrame({c: pd.Series(dtype=t) for c, (t, _) in columns.items()})
        out = pd.concat(frames, ignore_index=True) if frames else empty
        return out.astype({c: t for c, (t, _) in columns.items()})

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: self.table(name) for name in TABLES}


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


def write_run(folder: Path, config_yaml: str, run_info: dict, tables: dict[str, pd.DataFrame]):
    """Write a run folder: config.yaml, run.json and one parquet file per table."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(config_yaml)
    info = {**run_info, "packages": package_versions()}
    (folder / "run.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    for name, table in tables.items():
        table.to_parquet(folder / f"{name}.parquet", index=False)


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


def load_results(path: str | Path) -> dict[str, pd.DataFrame]:
    """The tables of a run folder as DataFrames, keyed by table name."""
    path = Path(path)
    missing = [n for n in TABLES if not (path / f"{n}.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a run folder: missing {missing}")
    return {name: pd.read_parquet(path / f"{name}.parquet") for name in TABLES}
