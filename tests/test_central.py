"""The TSO's integrated problem: the DSOs' rows stacked block-diagonally (sparse)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from market_sim.markets.central import block_rows


class _Block:
    """Stands in for a DistributionModel: its rows over its own bids."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.b, self.bids = a, b, [None] * a.shape[1]

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        return self.a, self.b


def test_block_rows_put_each_dso_on_its_own_columns() -> None:
    blocks = [
        _Block(np.arange(6.0).reshape(2, 3), np.ones(2)),
        _Block(np.zeros((0, 2)), np.zeros(0)),  # a DSO without carried constraints
        _Block(np.array([[7.0, 0.0]]), np.array([3.0])),
    ]
    a, b = block_rows(blocks)
    assert sp.issparse(a) and a.shape == (3, 7)
    expected = np.zeros((3, 7))
    expected[:2, :3] = np.arange(6.0).reshape(2, 3)
    expected[2, 5:] = [7.0, 0.0]
    np.testing.assert_array_equal(a.toarray(), expected)
    np.testing.assert_array_equal(b, [1.0, 1.0, 3.0])
    empty, none = block_rows([])
    assert empty.shape == (0, 0) and len(none) == 0
