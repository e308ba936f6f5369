"""TableBuffer.arrow hands large blocks to Arrow as chunks: the table read back is the one the
joined columns give, also where a block's column has another type than documented."""

import numpy as np
import pandas as pd

from market_sim.results import CHUNK_ROWS, TableBuffer, arrow_table


def _joined(buffer: TableBuffer) -> pd.DataFrame:
    columns = {c: np.concatenate([b[c] for b in buffer.blocks]) for c in buffer.columns}
    return arrow_table(buffer.name, columns).to_pandas()


def test_large_blocks_read_back_as_joined():
    buffer = TableBuffer("balancing_coefficients")
    rng = np.random.default_rng(0)
    for period in range(3):
        n = CHUNK_ROWS + period
        buffer.add_block(
            {
                "period": np.full(n, period),
                "row": np.arange(n),
                "offer_id": rng.integers(-5, 50, n),
                "coefficient": np.where(np.arange(n) % 7 == 0, np.nan, rng.normal(size=n)),
            }
        )
    expected = _joined(buffer)
    table = buffer.arrow()
    assert table.column("row").num_chunks == 3
    pd.testing.assert_frame_equal(table.to_pandas(), expected)


def test_blocks_of_other_types_are_joined_first():
    buffer = TableBuffer("prices")
    n = CHUNK_ROWS
    text = np.empty(n, dtype=object)
    text[:] = "balancing"
    buffer.add_block(
        {"period": np.zeros(n, dtype=np.int64), "bus": np.arange(n), "market": text,
         "price_eur_per_mwh": np.arange(n, dtype=np.int64)}
    )  # fmt: skip
    buffer.add_block(
        {"period": np.ones(n, dtype=np.int64), "bus": np.arange(n), "market": text,
         "price_eur_per_mwh": np.full(n, np.nan)}
    )  # fmt: skip
    expected = _joined(buffer)
    table = buffer.arrow()
    assert table.column("price_eur_per_mwh").num_chunks == 1
    assert table.column("bus").num_chunks == 2
    pd.testing.assert_frame_equal(table.to_pandas(), expected)
