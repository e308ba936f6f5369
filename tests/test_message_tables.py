"""The coordination models' message plumbing, built from numpy columns, gives the tables the
pandas operations it replaces give: same values, same dtypes, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_sim.coordination.dso_managed import _bought_by
from market_sim.coordination.period import VALIDATION_COLUMNS, no_validation, validation_table
from market_sim.messages import payload_bytes, stream_bytes
from market_sim.types import BID_COLUMNS, typed_frame


def _result_table(n: int, seed: int) -> pd.DataFrame:
    """A validation result's table as a validator makes it (reasons from a numpy text array)."""
    rng = np.random.default_rng(seed)
    reasons = np.where(rng.random(n) < 0.5, "ok", "cut: line 3")
    return pd.DataFrame(
        {"bid_id": rng.integers(0, 10**6, n), "validated_mw": rng.random(n), "reason": reasons}
    )


def _rows(validator: str, table: pd.DataFrame) -> pd.DataFrame:
    """What the models concatenated before: the result's columns with the validator's name."""
    return table.assign(validator=validator)[VALIDATION_COLUMNS]


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert list(a.dtypes) == list(b.dtypes)


@pytest.mark.parametrize("lengths", [(3, 5), (0, 4), (4, 0), (0, 0), (7,), ()])
def test_validation_table_is_the_concatenated_rows(lengths: tuple[int, ...]) -> None:
    """Any validators, some without rows (left out), none (the empty validation table)."""
    tables = [(f"dso{i}", _result_table(n, i)) for i, n in enumerate(lengths)]
    frames = [_rows(v, t) for v, t in tables if len(t)]
    expected = pd.concat(frames, ignore_index=True) if frames else no_validation()
    _same(validation_table(tables), expected)
    _same(validation_table((v, _rows(v, t)) for v, t in tables), expected)


def test_bought_by_is_assign() -> None:
    """A DSO's purchase, labelled by the bids' rows, with its name as the buyer."""
    rows = np.array([2, 5, 9])
    bought = pd.DataFrame({"bid_id": rows * 2 + 1, "mw": [0.5, 1.25, 2.0]}, index=rows)
    _same(_bought_by(bought, "rural"), bought.assign(buyer="rural"))
    empty = bought.iloc[0:0]
    _same(_bought_by(empty, "rural"), empty.assign(buyer="rural"))


def test_typed_frame_text_is_pd_array() -> None:
    """Text columns as pd.array(..., dtype="string") makes them: from object or numpy text,
    lists, missing values as NA."""
    n = 4
    columns = {c: np.arange(n) for c, t in BID_COLUMNS.items() if t != "string"}
    columns |= {
        "aggregator": np.array(["a", "b", "", "a"], dtype=object),
        "dso": ["rural", None, "semiurb", "rural"],
        "element": np.array(["load", "sgen", "storage", "load"]),
        "direction": np.array(["up", np.nan, "down", "up"], dtype=object),
    }
    expected = pd.DataFrame(
        {
            c: pd.array(columns[c], dtype=t) if t == "string" else np.asarray(columns[c], t)
            for c, t in BID_COLUMNS.items()
        }
    )
    _same(typed_frame(columns, BID_COLUMNS), expected)


@pytest.mark.parametrize(
    "values",
    [
        pd.date_range("2026-01-01", periods=5, freq="15min"),
        pd.to_timedelta(np.arange(5), unit="m"),
        pd.period_range("2026-01", periods=5, freq="M"),
        pd.array([1.5, None, 2.0, 3.0, 4.0], dtype="Float64"),
        pd.array([True, None, False, True, True], dtype="boolean"),
    ],
    ids=["datetime", "timedelta", "period", "Float64", "boolean"],
)
def test_payload_bytes_of_columns_read_as_arrays(values: object) -> None:
    """Column types read from the frame's own arrays, not from Series, count as serialised."""
    table = pd.DataFrame({"a": values, "b": np.arange(5)})
    assert payload_bytes(table) == stream_bytes(table)
    assert payload_bytes(table) == stream_bytes(table)
