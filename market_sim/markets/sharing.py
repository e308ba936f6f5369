"""Sharing DER between the TSO's balancing need and the DSOs' own needs under a priority rule.

The rules themselves are in :mod:`market_sim.markets.priority`; this module turns a period's
tables (validated bids, the DSOs' local-market requests, the TSO's need and its generators'
offers) into the capacity each DSO takes before the TSO clears the rest.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_sim.markets.local_market import LocalMarketResult
from market_sim.markets.priority import Needs, least_cost_use
from market_sim.types import DOWN, UP


def tso_goes_first(rule: str, tso_critical: bool) -> bool:
    """Whether the TSO clears before the DSOs take their share.

    ``criticality``: a DSO need prevents a limit violation, so the DSO goes first, unless the
    TSO's own need is critical too (its generators cannot cover it: unserved energy), in which
    case system security comes first.
    """
    return rule == "tso_first" or (rule == "criticality" and tso_critical)


def tso_is_critical(need_mw: float, ter: pd.DataFrame) -> bool:
    """The TSO's need is critical when its generators' offers cannot cover it."""
    direction = UP if need_mw > 0 else DOWN
    return abs(need_mw) > float(ter.loc[ter.direction == direction, "mw"].sum()) + 1e-9


def economic_takes(
    der: pd.DataFrame,
    requests: dict[str, LocalMarketResult],
    need_mw: float,
    ter: pd.DataFrame,
    voll_eur_per_mwh: float,
) -> dict[str, np.ndarray]:
    """Joint clearing of the TSO's need and every DSO's needs: each DER to its higher-value use.

    ``der``: bid_id, direction, mw, price_eur_per_mwh (validated capacity); ``ter``: the TSO's
    generator offers (usable by the TSO only). A copper-plate view of the transmission network:
    it decides what each DSO takes; the TSO then clears the rest on its DC-OPF. Returns, per
    DSO, the MW it takes of each row of ``der``.
    """
    direction = UP if need_mw > 0 else DOWN
    pool = pd.concat(
        [
            der[["bid_id", "direction", "mw", "price_eur_per_mwh"]],
            ter.assign(bid_id=-1)[["bid_id", "direction", "mw", "price_eur_per_mwh"]],
        ],
        ignore_index=True,
    )
    n_der = len(der)
    tso_effect = (pool.direction == direction).to_numpy(float)[None, :]
    sides = [Needs("tso", np.array([abs(need_mw)]), tso_effect, voll_eur_per_mwh, True)]
    position = pd.Series(np.arange(n_der), index=der.bid_id.to_numpy())
    for name, request in requests.items():
        if request.needs is None:
            continue
        effect = np.zeros((len(request.needs.need_mw), len(pool)))
        cols = position.reindex(request.bid_ids).to_numpy()
        ok = ~np.isnan(cols)
        effect[:, cols[ok].astype(int)] = request.needs.effect[:, ok]
        sides.append(
            Needs(name, request.needs.need_mw, effect, request.needs.penalty_eur_per_h, True)
        )
    use = least_cost_use(pool, sides)
    return {name: use[name][:n_der] for name in requests if name in use}
