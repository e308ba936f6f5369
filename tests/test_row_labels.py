"""The row labels of a clearing are what concatenating the reserve's and the DER rows' labels
makes, though they are joined by their arrays."""

import numpy as np
import pandas as pd
import pytest

from market_sim.columns import as_frame
from market_sim.markets.tso_markets import reserve_labels, row_label_columns
from market_sim.types import DOWN, UP


def row_labels(reserve, der, n_rows):
    """The labels as the table a reader makes of them (a table, or its columns)."""
    return as_frame(row_label_columns(reserve, der, n_rows))


def _der(n: int, kind_dtype: str = "object") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "kind": pd.Series(["vmax", "line", "trafo"][:n], dtype=kind_dtype),
            "dso": pd.Series(["a", "b", "b"][:n], dtype=object),
            "element": pd.Series(["bus", "line", "trafo"][:n], dtype=object),
            "element_index": np.array([3, 4, 0][:n], dtype=np.int64),
        }
    )


@pytest.mark.parametrize("reserve", [{UP: 0.0}, {UP: 1.0}, {UP: 1.0, DOWN: 2.0}])
@pytest.mark.parametrize("der", [_der(3), _der(0), _der(2, "string")])
def test_row_labels_are_the_concatenation(reserve, der):
    top = reserve_labels(reserve)
    got = row_labels(top, der, len(top) + len(der))
    expected = pd.concat([top, der], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert isinstance(got.index, pd.RangeIndex)


@pytest.mark.parametrize("reserve", [{UP: 0.0}, {UP: 1.0, DOWN: 2.0}])
@pytest.mark.parametrize("n", [0, 3])
def test_row_labels_of_columns_are_those_of_their_table(reserve, n):
    """The TSO-managed clearing hands its rows' labels over as arrays: the same table."""
    top, der = reserve_labels(reserve), _der(n)
    columns = {c: der[c].to_numpy() for c in der}
    got = row_labels(top, columns, len(top) + n)
    pd.testing.assert_frame_equal(got, row_labels(top, der, len(top) + n), check_exact=True)
    assert isinstance(got.index, pd.RangeIndex)


def test_no_reserve_labels_are_text():
    assert reserve_labels({UP: 0.0})["kind"].dtype == object
