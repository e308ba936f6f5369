"""The TER offers do not depend on the order of a schedule's outputs, and DER offers are at
their DSO's interface bus (a DSO without one is an error)."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from market_sim.markets.offers import bid_offer_columns, ter_offers
from market_sim.markets.schedule import EnergySchedule


def test_ter_offers_read_the_outputs_by_generator_name(case39):
    schedule = EnergySchedule(case39).solve(case39.base_load_mw)
    ramp = 0.01 * case39.generators["p_max_mw"].to_numpy()
    expected = ter_offers(case39, schedule, ramp)
    shuffled = replace(schedule, gen_mw=schedule.gen_mw.iloc[::-1])
    pd.testing.assert_frame_equal(ter_offers(case39, shuffled, ramp), expected, check_exact=True)
    missing = replace(schedule, gen_mw=schedule.gen_mw.iloc[1:])
    first = case39.generators["element"].iloc[0]
    offers = ter_offers(case39, missing, ramp)
    assert first not in set(offers["element"])
    assert len(offers) == len(expected[expected["element"] != first])


def test_der_offers_are_at_their_dsos_interface_bus():
    bids = pd.DataFrame(
        {
            "bid_id": [0, 1, 2, 3],
            "dso": pd.array(["b", "a", "b", "a"], dtype="string"),
            "direction": pd.array(["up", "down", "up", "up"], dtype="string"),
            "mw": [1.0, 2.0, 0.0, 3.0],
            "price_eur_per_mwh": [1.0, 2.0, 3.0, 4.0],
        }
    )
    offers = bid_offer_columns(bids, {"a": 7, "b": 5})
    np.testing.assert_array_equal(offers["offer_id"], [0, 1, 3])
    np.testing.assert_array_equal(offers["bus"], [5, 7, 7])
    assert offers["bus"].dtype == np.int64
    with pytest.raises(KeyError, match="b"):
        bid_offer_columns(bids, {"a": 7})
    assert len(bid_offer_columns(bids.iloc[:0], {})["bus"]) == 0
