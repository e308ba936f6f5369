"""A run saved at a checkpoint and resumed gives the same tables as the uninterrupted run."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from market_sim.model import MarketModel
from market_sim.run_state import RunState

START = 40  # late morning: PV, batteries and the balancing market all in use
CHUNK = 8  # checkpoint every 8 periods (a day in a real run)


def _tables(sim: MarketModel) -> dict[str, pd.DataFrame]:
    return {n: t for n, t in sim.tables().items() if n != "timings"}


@pytest.mark.parametrize("model", ["tso_managed", "hybrid", "dso_managed"])
def test_resumed_run_equals_uninterrupted_run(quickstart, networks, case39, model):
    settlement = quickstart.settlement.model_copy(update={"delivery_reliability": 0.8})
    config = quickstart.for_model(model).model_copy(update={"settlement": settlement})

    straight = MarketModel(config, networks, case39, checkpoint_periods=CHUNK)
    straight.period = START
    straight.run(periods=2 * CHUNK)

    first = MarketModel(config, networks, case39, checkpoint_periods=CHUNK)
    first.period = START
    first.run(periods=CHUNK)
    blob = first.state.to_bytes()
    before = _tables(first)
    del first  # nothing of the first model reaches the second but the bytes
    second = MarketModel(
        config, networks, case39, state=RunState.from_bytes(blob), checkpoint_periods=CHUNK
    )
    assert second.period == START + CHUNK
    second.run(periods=CHUNK)

    after, whole = _tables(second), _tables(straight)
    resumed = {n: pd.concat([before[n], after[n]], ignore_index=True) for n in whole}
    for name, table in whole.items():
        pd.testing.assert_frame_equal(table, resumed[name], check_exact=True, obj=name)
    assert len(whole["dispatch"]) > 0 and (whole["dispatch"].delivered_mw == 0).any()


def test_run_state_bytes_round_trip(make_model):
    sim = make_model("hybrid")
    sim.period = START
    sim.run(periods=2)
    state = sim.state
    again = RunState.from_bytes(state.to_bytes())
    assert (again.period, again.time_s, again.forecast_error) == (
        state.period,
        state.time_s,
        state.forecast_error,
    )
    assert np.array_equal(again.energy.soc_mwh, state.energy.soc_mwh)
    assert np.array_equal(again.energy.debt_mwh, state.energy.debt_mwh)
    assert np.array_equal(again.energy.overdue_mwh, state.energy.overdue_mwh)
    assert np.abs(state.energy.debt_mwh).sum() > 0  # a round trip of zeros would prove little
    for name, injections in state.delivered.items():
        for table, p in injections.p_mw.items():
            assert np.array_equal(again.delivered[name].p_mw[table], p)
        assert np.array_equal(again.delivered[name].trafo_tap_pos, injections.trafo_tap_pos)
    for name, generator in state.streams.items():
        assert again.streams[name].random() == generator.random()


def test_bytes_of_another_format_are_refused():
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(ValueError, match="not a run state"):
        RunState.from_bytes(buffer.getvalue())


def test_the_forecast_error_starts_from_its_stationary_distribution():
    """Not from 0: an AR(1) started at 0 damps the first hours' needs (issue 8, item 7)."""
    from market_sim.agents.prosumer import DeviceEnergy

    energy = DeviceEnergy(np.zeros(1), np.zeros((1, 8)), np.zeros(1))
    start = np.array([RunState.initial(seed, energy, 0.02).forecast_error for seed in range(400)])
    assert abs(start.mean()) < 0.003  # 3 standard errors of the mean
    assert 0.017 < start.std() < 0.023
    # each run's draw comes from its own forecast-error stream: seeds reproduce it
    assert RunState.initial(7, energy, 0.02).forecast_error == start[7]
