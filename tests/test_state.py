"""The operational data table and back: the set-points a TSO rebuilds from a DSO's report."""

from __future__ import annotations

import numpy as np

from market_sim.grid.state import injections_from_table, measured_state
from market_sim.types import ELEMENT_TABLES, Injections, Limits


def _assert_same(got: Injections, want: Injections) -> None:
    for table in ELEMENT_TABLES:
        np.testing.assert_array_equal(got.p_mw[table], want.p_mw[table])
        np.testing.assert_array_equal(got.q_mvar[table], want.q_mvar[table])
    np.testing.assert_array_equal(got.trafo_tap_pos, want.trafo_tap_pos)


def test_set_points_come_back_from_the_table_whatever_its_row_order(networks):
    """The rows of each element table are located once per table layout and kept with the
    network: a table of the same layout, a reordered one and one without the storage rows
    each give their own set-points."""
    dn = next(iter(networks.values()))
    first, second = dn.baseline(10), dn.baseline(40)
    first.trafo_tap_pos = first.trafo_tap_pos + 1.0
    table = measured_state(dn, first, Limits())
    _assert_same(injections_from_table(dn, table), first)
    later = measured_state(dn, second, Limits())
    _assert_same(injections_from_table(dn, later), second)  # the kept layout, new values
    reversed_rows = later.iloc[::-1].reset_index(drop=True)
    _assert_same(injections_from_table(dn, reversed_rows), second)
    no_storage = later[later.element != "storage"].reset_index(drop=True)
    got = injections_from_table(dn, no_storage)
    np.testing.assert_array_equal(got.p_mw["storage"], np.zeros(len(dn.net.storage)))
    np.testing.assert_array_equal(got.p_mw["load"], second.p_mw["load"])


def test_a_transformer_without_a_row_keeps_the_nets_tap(networks):
    """Taps the table does not give are the net's; element names as plain text work too."""
    dn = next(iter(networks.values()))
    table = measured_state(dn, dn.baseline(20), Limits())
    no_trafo = table[table.element != "trafo"].astype({"element": object})
    got = injections_from_table(dn, no_trafo.reset_index(drop=True))
    net_taps = np.nan_to_num(dn.net.trafo.tap_pos.to_numpy(float))
    np.testing.assert_array_equal(got.trafo_tap_pos, net_taps)
    np.testing.assert_array_equal(got.p_mw["load"], dn.baseline(20).p_mw["load"])
