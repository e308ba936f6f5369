"""recording._entries reads a CSR matrix's entries as ``tocoo`` holds them."""

import numpy as np
from scipy import sparse

from market_sim.recording import _entries


def test_entries_are_tocoo_in_order():
    matrices = [
        sparse.random_array((40, 300), density=0.1, format="csr", random_state=1),
        sparse.csr_array(
            (np.array([0.0, 2.0]), np.array([3, 1]), np.array([0, 0, 2, 2])), shape=(3, 4)
        ),  # fmt: skip
        sparse.csr_array((0, 5)),
    ]
    for matrix in matrices:
        row, col, data = _entries(matrix)
        coo = matrix.tocoo()
        for mine, theirs in ((row, coo.row), (col, coo.col), (data, coo.data)):
            np.testing.assert_array_equal(mine, theirs)
            assert mine.dtype == theirs.dtype
