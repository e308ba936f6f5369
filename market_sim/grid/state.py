"""Network state as a table and back: what crosses the wire as operational data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.grid.network import DistributionNetwork
from market_sim.types import ELEMENT_TABLES, Injections


def injections_from_table(network: DistributionNetwork, table: pd.DataFrame) -> Injections:
    """Rebuild :class:`Injections` from an ``injections`` table (element, element_index, ...).

    Elements missing from the table keep zero; transformer taps are read from ``trafo`` rows.
    """
    net = network.net
    p, q = {}, {}
    for name in ELEMENT_TABLES:
        rows = table[table.element == name]
        pos = net[name].index.get_indexer(rows.element_index.to_numpy())
        p[name] = np.zeros(len(net[name]))
        q[name] = np.zeros(len(net[name]))
        p[name][pos] = rows.p_mw.to_numpy(float)
        q[name][pos] = rows.q_mvar.to_numpy(float)
    taps = np.nan_to_num(net.trafo.tap_pos.to_numpy(float))
    trafo = table[table.element == "trafo"]
    if len(trafo):
        taps[net.trafo.index.get_indexer(trafo.element_index.to_numpy())] = trafo.tap_pos
    return Injections(p, q, taps)
