"""Priority rules for the simultaneous use of DER services by the TSO and a DSO.

When both want the same DER in the same period (hybrid model with the DSO buying on the central
market; DSO-managed scheme ii), a rule decides who gets what (the paper, Sections II-B, II-C):

* ``tso_first``: the TSO clears first, the DSO buys from what is left;
* ``dso_first``: the reverse;
* ``criticality``: the need that prevents a technical violation goes first (ties: the need whose
  shortfall costs more per MWh);
* ``economic``: joint clearing, one linear program: each DER goes to the use with the higher
  value.

Each side states its needs as rows ``need_mw``: a DER ``b`` serving need row ``k`` contributes
``effect[k, b]`` per MW (1 for the TSO's balancing need in the DER's direction; a sensitivity for
a DSO's voltage or loading problem, in pu or % per MW). Unmet need costs ``penalty_eur_per_h``
per unit and hour (the value of lost load for the TSO's MW, a violation penalty for the DSO).
The allocation is a pure function of these tables, so each rule has a hand-checkable answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linprog

RULES = ("tso_first", "dso_first", "criticality", "economic")
SIDES = ("tso", "dso")


@dataclass(frozen=True)
class Needs:
    """One side's needs: rows of ``need_mw`` with the effect of each DER on each row."""

    side: str
    need_mw: np.ndarray  # (k,) service needed, >= 0
    effect: np.ndarray  # (k, n_der) service per MW of each DER
    penalty_eur_per_h: float  # cost of one unit of unmet need (MW, or pu or %) for one hour
    critical: bool  # unmet need means a technical violation


@dataclass(frozen=True)
class Allocation:
    """Who got which DER, and what each side was left without.

    ``table``: bid_id, side, mw (one row per DER and side that uses it); ``unmet_mw`` and
    ``cost_eur_per_h`` per side (cost of the DER it bought plus the penalty of its unmet need).
    """

    rule: str
    table: pd.DataFrame
    unmet_mw: dict[str, float]
    cost_eur_per_h: dict[str, float]


def allocate(rule: str, der: pd.DataFrame, tso: Needs, dso: Needs) -> Allocation:
    """Share the DER offers ``der`` (bid_id, mw, price_eur_per_mwh) between TSO and DSO."""
    if rule not in RULES:
        raise ValueError(f"unknown priority rule {rule!r}; allowed: {', '.join(RULES)}")
    if rule == "economic":
        use = least_cost_use(der, [tso, dso])
    else:
        first = _first(rule, tso, dso)
        second = dso if first is tso else tso
        use_first = least_cost_use(der, [first])
        left = der.assign(mw=der.mw.to_numpy() - use_first[first.side])
        use = {
            first.side: use_first[first.side],
            second.side: least_cost_use(left, [second])[second.side],
        }
    return _allocation(rule, der, use, (tso, dso))


def _first(rule: str, tso: Needs, dso: Needs) -> Needs:
    if rule == "tso_first":
        return tso
    if rule == "dso_first":
        return dso
    # criticality: a need that prevents a violation first; then the costlier shortfall
    return max((tso, dso), key=lambda n: (n.critical, n.penalty_eur_per_h, n.side == "tso"))


def least_cost_use(der: pd.DataFrame, sides: list[Needs]) -> dict[str, np.ndarray]:
    """Least-cost use of the DER by ``sides`` (one LP); returns MW per DER for each side.

    With one side this is a local flexibility market: the DSO buys relief for its predicted
    violations at least cost.

    Variables: q[s, b] >= 0 for each side and DER, unmet[s, k] >= 0 for each need row.
    min sum price_b q[s, b] + sum penalty_s unmet[s, k]
    s.t. sum_s q[s, b] <= mw_b;  sum_b effect[k, b] q[s, b] + unmet[s, k] >= need[s, k].
    """
    n = len(der)
    price = der.price_eur_per_mwh.to_numpy(float)
    cap = np.clip(der.mw.to_numpy(float), 0.0, None)
    rows = sum(len(s.need_mw) for s in sides)
    n_var = len(sides) * n + rows
    cost = np.concatenate(
        [
            np.tile(price, len(sides)),
            np.concatenate([np.full(len(s.need_mw), s.penalty_eur_per_h) for s in sides]),
        ]
    )
    a_cap = np.zeros((n, n_var))
    for i in range(len(sides)):
        a_cap[:, i * n : (i + 1) * n] = np.eye(n)
    a_need = np.zeros((rows, n_var))
    need = np.zeros(rows)
    row = 0
    for i, s in enumerate(sides):
        k = len(s.need_mw)
        a_need[row : row + k, i * n : (i + 1) * n] = -s.effect
        a_need[row : row + k, len(sides) * n + row : len(sides) * n + row + k] = -np.eye(k)
        need[row : row + k] = -s.need_mw
        row += k
    result = linprog(
        cost,
        A_ub=np.vstack([a_cap, a_need]),
        b_ub=np.concatenate([cap, need]),
        bounds=(0, None),
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"priority allocation LP failed: {result.message}")
    x = result.x
    return {s.side: x[i * n : (i + 1) * n] for i, s in enumerate(sides)}


def _allocation(
    rule: str, der: pd.DataFrame, use: dict[str, np.ndarray], sides: tuple[Needs, Needs]
) -> Allocation:
    price = der.price_eur_per_mwh.to_numpy(float)
    parts, unmet, cost = [], {}, {}
    for s in sides:
        mw = np.where(use[s.side] > 1e-9, use[s.side], 0.0)
        parts.append(
            pd.DataFrame({"bid_id": der.bid_id.to_numpy(np.int64), "side": s.side, "mw": mw})[
                mw > 0
            ]
        )
        short = np.clip(s.need_mw - s.effect @ mw, 0.0, None)
        unmet[s.side] = float(short.sum())
        cost[s.side] = float(price @ mw + s.penalty_eur_per_h * short.sum())
    table = pd.concat(parts, ignore_index=True)
    return Allocation(rule, table, unmet, cost)
