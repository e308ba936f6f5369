"""The Recorder's column buffers give the tables a DataFrame per part gave, dtypes included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_sim.results import Recorder
from market_sim.tables import TABLES


def reference_table(name: str, parts: list[pd.DataFrame | list[dict]]) -> pd.DataFrame:
    """The table as the recorder built it before it kept column arrays: one DataFrame per
    part, concatenated, then cast to the documented dtypes."""
    columns = TABLES[name]
    frames = [
        p if isinstance(p, pd.DataFrame) else pd.DataFrame(p, columns=list(columns))
        for p in parts
        if len(p)
    ]
    frames = [f[list(columns)] for f in frames]
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, (t, _) in columns.items()})
    out = pd.concat(frames, ignore_index=True) if frames else empty
    return out.astype({c: t for c, (t, _) in columns.items()})


def injections(period: int, dso: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
    element = rng.choice(["load", "sgen", "trafo"], n)
    return pd.DataFrame(
        {
            "element": pd.array(element, dtype="string"),
            "element_index": rng.integers(0, 50, n),
            "p_mw": rng.normal(size=n),
            "q_mvar": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "tap_pos": rng.normal(size=n).astype(np.float32),
            "unrecorded": rng.normal(size=n),
        }
    ).assign(period=period, dso=dso)


def test_every_way_of_adding_rows_gives_the_reference_tables() -> None:
    rng = np.random.default_rng(1)
    recorder, parts = Recorder(), {name: [] for name in TABLES}
    for period in range(4):
        for dso in ("mv1", "lv2"):
            n = int(rng.integers(0, 6))
            frame = injections(period, dso, n, rng)
            parts["injections"].append(frame)
            without = frame.drop(columns=["period", "dso"])
            recorder.add_frame("injections", without, period=period, dso=dso)
            columns = {c: frame[c].to_numpy() for c in ("element", "element_index", "p_mw")}
            columns |= {"q_mvar": frame.q_mvar, "tap_pos": frame.tap_pos.to_numpy()}
            parts["baseline"].append(frame)
            recorder.add_columns("baseline", columns, period=period, dso=dso)
        timings = [(period, "tso", stage, float(rng.random())) for stage in ("bids", "clearing")]
        parts["timings"].append([dict(zip(TABLES["timings"], row, strict=True)) for row in timings])
        for row in timings:
            recorder.add_row("timings", row)
        kpis = [
            {"period": period, "name": "cost", "value": rng.random(), "unit": "EUR"},
            {"period": period, "name": "count", "value": 3, "unit": None},
        ]
        parts["kpis"].append(kpis)
        recorder.add("kpis", kpis)
        # named rows with a missing column (NaN), then a frame: their order is kept
        events = [{"period": period, "kind": "late_message", "message": f"m{period}"}]
        parts["events"].append(events)
        recorder.add("events", events)
        frame = pd.DataFrame(
            {"period": [period], "time_s": [1.5], "kind": ["x"], "message": [None]}
        )
        parts["events"].append(frame)
        recorder.add("events", frame)
    for name in TABLES:
        expected = reference_table(name, parts[name])
        for _ in range(2):  # a second call joins nothing new
            got = recorder.table(name)
            pd.testing.assert_frame_equal(got, expected, check_exact=True)
            assert list(got.dtypes) == list(expected.dtypes)


def test_rows_added_after_a_table_was_read_follow_it() -> None:
    recorder = Recorder()
    recorder.add_row("timings", (0, "tso", "bids", 0.5))
    first = recorder.table("timings")
    later = {"role": ["grid"], "stage": ["delivery"], "seconds": [2]}
    recorder.add_columns("timings", later, period=1)
    assert recorder.table("timings").stage.tolist() == ["bids", "delivery"]
    assert first.stage.tolist() == ["bids"]
    recorder.clear()
    assert recorder.table("timings").empty


def test_recorded_rows_do_not_change_with_the_frame_they_came_from() -> None:
    recorder = Recorder()
    frame = pd.DataFrame({"bus": [1, 2], "load_mw": [1.0, 2.0], "need_mw": [0.0, 0.5]})
    recorder.add_frame("balancing_buses", frame, period=0)
    frame.loc[0, "load_mw"] = 99.0
    frame["need_mw"].to_numpy()[1] = 99.0
    assert recorder.table("balancing_buses").load_mw.tolist() == [1.0, 2.0]
    assert recorder.table("balancing_buses").need_mw.tolist() == [0.0, 0.5]


def test_columns_of_unequal_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="unequal lengths"):
        Recorder().add_columns("prices", {"bus": [1, 2], "price_eur_per_mwh": [3.0]}, period=0)


def test_message_table_is_the_frame_of_the_log_rows() -> None:
    """The messages table built from columns is the frame of the log's rows plus the roles,
    as the KPIs read it (dtypes inferred from the values; no rows: object columns)."""
    from types import SimpleNamespace

    from market_sim.model import MarketModel
    from market_sim.schedule import MESSAGE_COLUMNS

    roles = {"tso": "tso", "mv1": "dso"}
    model = SimpleNamespace(role=lambda name: roles.get(name, "aggregator"))
    receivers = ["mv1", "agg", "tso"]
    log = [
        (3, 900 + i, 900.5 + i, "tso", receivers[i % 3], "bids", "1a", i, 1000 * i, i % 4 == 0)
        for i in range(10)
    ]
    for rows in (log, [], [(0, 0, 0.0, "tso", "tso", "bids", "1a", 0, 10, False)]):
        expected = pd.DataFrame(rows, columns=list(MESSAGE_COLUMNS))
        expected["sender_role"] = expected.sender.map(model.role)
        expected["receiver_role"] = expected.receiver.map(model.role)
        got = MarketModel.message_table(model, rows)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert list(got.dtypes) == list(expected.dtypes)
