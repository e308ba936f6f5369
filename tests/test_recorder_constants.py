"""Constants kept as runs (the period, a DSO's name) read back as the arrays they stand for:
in small blocks joined, in large blocks converted one by one, mixed with arrays, and of other
types than documented."""

import numpy as np
import pandas as pd

from market_sim.results import CHUNK_ROWS, Recorder, arrow_table


def _repeated(n: int, value: object) -> np.ndarray:
    """A constant as the recorder made it before runs: one value per row."""
    column = np.empty(n, dtype=object)
    column[:] = value
    return column if isinstance(value, str | None) else np.full(n, value)


def _expected(table: str, blocks: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    columns = {c: np.concatenate([b[c] for b in blocks]) for c in blocks[0]}
    return arrow_table(table, columns).to_pandas()


def test_small_blocks_of_constants_read_back_as_repeated_values():
    recorder, blocks = Recorder(), []
    for period, market in enumerate(["schedule", "balancing", None, "balancing"]):
        n = 3 + period
        columns = {"bus": np.arange(n), "price_eur_per_mwh": np.linspace(0.0, 1.0, n)}
        recorder.add_columns("prices", columns, period=period, market=market)
        blocks.append(columns | {"period": _repeated(n, period), "market": _repeated(n, market)})
    pd.testing.assert_frame_equal(recorder.table("prices"), _expected("prices", blocks))
    pd.testing.assert_frame_equal(recorder.table("prices"), _expected("prices", blocks))


def test_large_blocks_and_constants_of_other_types():
    recorder, blocks = Recorder(), []
    for period in (0.0, 1.0, 2.0):  # floats for an int64 column: converted as arrays are
        n = CHUNK_ROWS + 1
        columns = {"row": np.arange(n), "offer_id": np.arange(n) - 5, "coefficient": np.ones(n)}
        recorder.add_columns("balancing_coefficients", columns, period=period)
        blocks.append(columns | {"period": _repeated(n, period)})
    table = recorder.buffers["balancing_coefficients"].arrow()
    assert table.column("row").num_chunks == 3
    pd.testing.assert_frame_equal(table.to_pandas(), _expected("balancing_coefficients", blocks))


def test_a_column_given_as_values_and_as_constant():
    recorder, blocks = Recorder(), []
    names = np.array(["tso", "rural"], dtype=object)
    for period, unit in enumerate([names, "MW"]):
        columns = {"name": names, "value": np.array([1.0, np.nan]) + period}
        if isinstance(unit, str):
            recorder.add_columns("kpis", columns, period=period, unit=unit)
        else:
            recorder.add_columns("kpis", columns | {"unit": unit}, period=period)
        given = unit if isinstance(unit, np.ndarray) else _repeated(2, unit)
        blocks.append(columns | {"period": _repeated(2, period), "unit": given})
    pd.testing.assert_frame_equal(recorder.table("kpis"), _expected("kpis", blocks))
