"""Priority rules for the simultaneous use of DER services by the TSO and the DSOs.

When both want the same DER in the same period (hybrid model with the DSOs buying on the
central market; DSO-managed scheme ii), a rule decides who gets what (the paper, Sections II-B,
II-C):

* ``tso_first``: the TSO clears first, the DSOs take what they asked for from what is left;
* ``dso_first``: the DSOs take what they asked for, the TSO clears the rest;
* ``criticality``: a DSO's need prevents a limit violation, so the DSOs go first, unless the
  TSO's own need is critical too (its generators cannot cover it: unserved energy), in which
  case system security comes first;
* ``economic``: one joint linear program over the TSO's need and every DSO's needs decides what
  each DSO takes (each DER to the use with the higher value); the TSO clears the rest.

Each rule is a function below, registered in :data:`market_sim.registry.PRIORITY_RULES`, that
says who is served first (the TSO, the DSOs, or both jointly) given whether the TSO's need is
critical; :func:`share` does the rest the same way for every rule.

A side states its needs as rows ``need_mw``: a DER ``b`` serving need row ``k`` contributes
``effect[k, b]`` per MW (1 for the TSO's balancing need in the DER's direction; a sensitivity
for a DSO's voltage or loading problem, in pu or % per MW). Unmet need costs
``penalty_eur_per_h`` per unit and hour (the value of lost load for the TSO's MW, a violation
penalty for a DSO). :func:`share` is a pure function of the period's tables and the TSO's
clearing, so each rule has a hand-checkable answer; a failed linear program is a status in the
result, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import highspy
import numpy as np
import pandas as pd
from scipy import sparse

from market_sim import kernels
from market_sim.markets.devices import device_of, partner_used, washed_devices
from market_sim.markets.group_sum import sums_at
from market_sim.registry import PRIORITY_RULES
from market_sim.types import DOWN, UP

if TYPE_CHECKING:
    from market_sim.markets.local_market import LocalMarketResult

#: Who is served first under a rule: the TSO, the DSOs, or both at once (one joint LP).
TSO, DSO, JOINT = "tso", "dso", "joint"


def tso_first(tso_critical: bool) -> str:
    return TSO


def dso_first(tso_critical: bool) -> str:
    return DSO


def criticality(tso_critical: bool) -> str:
    """A DSO's need prevents a limit violation, so it goes first, unless the TSO's generators
    cannot cover the TSO's need: then system security comes first."""
    return TSO if tso_critical else DSO


def economic(tso_critical: bool) -> str:
    return JOINT


#: Below this (MW) a DSO's take is solver noise and reported as nothing.
TAKE_TOL_MW = 1e-9

#: ``clear(bids) -> (result, TSO dispatch)``: the TSO's side, given the bids left to it.
Clear = Callable[[pd.DataFrame], tuple[object, pd.DataFrame]]


@dataclass(frozen=True)
class Needs:
    """One side's needs: rows of ``need_mw`` with the effect of each DER on each row."""

    side: str
    need_mw: np.ndarray  # (k,) service needed, >= 0
    effect: np.ndarray  # (k, n_der) service per MW of each DER
    penalty_eur_per_h: float  # cost of one unit of unmet need (MW, or pu or %) for one hour


@dataclass(frozen=True)
class Use:
    """MW of each DER used by each side (``use[side]``); nothing used when the LP failed."""

    mw: dict[str, np.ndarray]
    ok: bool = True
    message: str = "optimal"

    def __getitem__(self, side: str) -> np.ndarray:
        return self.mw[side]


@dataclass(frozen=True)
class Sharing:
    """What :func:`share` decided for a period.

    ``result``: the TSO's clearing (what ``clear`` returned); ``dispatch``: bid_id, mw, buyer
    (tso or a DSO's name) of every DER used; ``priority_rows``: one row per contested or used
    DER of a DSO (dso, rule, bid_id, dso_requested_mw, dso_mw, tso_mw; no period);
    ``tso_extra_cost_eur_per_h``: what the DSOs taking first cost the TSO (0 when not known);
    ``dso_shortfall_mw``: what the DSOs asked for and did not get. ``ok`` is False, with
    ``message``, when the economic rule's LP failed: the DSOs then took nothing by it.
    """

    result: object
    dispatch: pd.DataFrame
    priority_rows: pd.DataFrame
    tso_extra_cost_eur_per_h: float = 0.0
    dso_shortfall_mw: float = 0.0
    ok: bool = True
    message: str = ""


def share(
    rule: str,
    usable: pd.DataFrame,
    requests: dict[str, LocalMarketResult],
    clear: Clear,
    ter_offers: pd.DataFrame,
    need_mw: float,
    voll_eur_per_mwh: float,
    tso_need_mw: float | None = None,
    tso_cost: Callable[[pd.DataFrame], float] | None = None,
) -> Sharing:
    """Serve the TSO (through ``clear``) and the DSOs' requests from the same validated bids.

    ``usable``: bid_id, dso, direction, mw, price_eur_per_mwh (validated capacity);
    ``requests``: each DSO's local-market purchase; ``ter_offers``: the TSO's generator offers;
    ``need_mw``: the TSO's total balancing need (signed), which decides whether it is critical;
    ``tso_need_mw``: what the TSO wants from these bids in the economic rule (default: its whole
    need); ``tso_cost(bids)``, where given, is the TSO's balancing cost (EUR/h) with all of
    ``bids``, the reference for what the DSOs taking first cost it.
    """
    order = PRIORITY_RULES.load(rule)
    wanted = {n: r for n, r in requests.items() if not r.bought.empty}
    if not wanted:
        result, dispatch = clear(usable)
        return Sharing(result, dispatch, priority_rows(rule, "", [], [], [], []))
    bought = pd.concat([r.bought for r in wanted.values()], ignore_index=True)
    request = taken(bought, usable.bid_id)
    if tso_need_mw is None:
        tso_need_mw = need_mw
    extra_cost, use = 0.0, Use({})
    first = order(tso_is_critical(need_mw, ter_offers))
    if first == TSO:
        result, tso = clear(usable)
        take = np.minimum(request, left_after(usable, tso).mw.to_numpy(float))
    else:
        take = request
        if first == JOINT:
            use = economic_use(usable, wanted, tso_need_mw, ter_offers, voll_eur_per_mwh)
            take = _economic_take(use, wanted, len(usable))
        alone = tso_cost(usable) if tso_cost is not None else None
        used = pd.DataFrame({"bid_id": usable.bid_id.to_numpy(np.int64), "mw": take})
        result, tso = clear(left_after(usable, used))
        if alone is not None and result is not None and result.ok:
            extra_cost = result.cost_eur - alone
    take = np.where(take > TAKE_TOL_MW, take, 0.0)
    local = pd.DataFrame(
        {
            "bid_id": usable.bid_id.to_numpy(np.int64),
            "mw": take,
            "buyer": usable.dso.astype(object).to_numpy(),
        }
    )
    return Sharing(
        result,
        pd.concat([tso, local[local.mw > 0]], ignore_index=True),
        _rows_by_dso(rule, wanted, usable, request, take, tso),
        tso_extra_cost_eur_per_h=extra_cost,
        dso_shortfall_mw=float(np.sum(request - take).clip(0.0)),
        ok=use.ok,
        message=use.message if not use.ok else "",
    )


def _rows_by_dso(rule, wanted, usable, request, take, tso) -> pd.DataFrame:
    """The ``priority`` rows of every DSO that asked for something."""
    dso, bid_id = usable.dso.to_numpy(object), usable.bid_id.to_numpy(np.int64)
    tso_mw = taken(tso, bid_id)
    rows = []
    for name in wanted:
        mine = dso == name
        rows.append(
            priority_rows(rule, name, bid_id[mine], request[mine], take[mine], tso_mw[mine])
        )
    return pd.concat(rows, ignore_index=True)


def left_after(bids: pd.DataFrame, used: pd.DataFrame) -> pd.DataFrame:
    """What is left of ``bids`` for a second buyer after ``used`` (bid_id, mw): each bid less
    what was used of it, and nothing of a bid whose device is used in the other direction (a
    device's up and down bids are mutually exclusive, whoever buys them)."""
    used_mw = taken(used, bids.bid_id)
    left = np.clip(bids.mw.to_numpy(float) - used_mw, 0.0, None)
    other_way = partner_used(bids.bid_id, bids.direction.to_numpy(object) == UP, used_mw)
    return bids.assign(mw=np.where(other_way, 0.0, left))


def tso_is_critical(need_mw: float, ter: pd.DataFrame) -> bool:
    """The TSO's need is critical when its generators' offers cannot cover it."""
    direction = UP if need_mw > 0 else DOWN
    offered = ter.mw.to_numpy(float)[ter.direction.to_numpy(object) == direction]
    return abs(need_mw) > float(np.nansum(offered)) + 1e-9  # NaN skipped, as pandas does


def economic_use(
    der: pd.DataFrame,
    requests: dict[str, LocalMarketResult],
    need_mw: float,
    ter: pd.DataFrame,
    voll_eur_per_mwh: float,
) -> Use:
    """Joint clearing of the TSO's need and every DSO's needs: each DER to its higher-value use.

    ``der``: bid_id, direction, mw, price_eur_per_mwh (validated capacity); ``ter``: the TSO's
    generator offers (usable by the TSO only, after the DER in the pool). A copper-plate view
    of the transmission network: it decides what each DSO takes; the TSO then clears the rest
    on its DC-OPF.
    """
    direction = UP if need_mw > 0 else DOWN
    columns = ["bid_id", "direction", "mw", "price_eur_per_mwh"]
    pool = pd.concat([der[columns], ter.assign(bid_id=-1)[columns]], ignore_index=True)
    tso_effect = (pool.direction == direction).to_numpy(float)[None, :]
    sides = [Needs("tso", np.array([abs(need_mw)]), tso_effect, voll_eur_per_mwh)]
    position = pd.Series(np.arange(len(der)), index=der.bid_id.to_numpy())
    for name, request in requests.items():
        if request.needs is None:
            continue
        effect = np.zeros((len(request.needs.need_mw), len(pool)))
        cols = position.reindex(request.bid_ids).to_numpy()
        ok = ~np.isnan(cols)
        effect[:, cols[ok].astype(int)] = request.needs.effect[:, ok]
        sides.append(Needs(name, request.needs.need_mw, effect, request.needs.penalty_eur_per_h))
    return least_cost_use(pool, sides)


def _economic_take(use: Use, wanted: dict[str, LocalMarketResult], n_der: int) -> np.ndarray:
    """What the DSOs take of the first ``n_der`` rows of the pool; nothing if the LP failed."""
    if not use.ok:
        return np.zeros(n_der)
    return np.sum([use[name][:n_der] for name in wanted if name in use.mw], axis=0)


def least_cost_use(der: pd.DataFrame, sides: list[Needs]) -> Use:
    """Least-cost use of the DER by ``sides`` (one LP); MW per DER for each side.

    With one side this is a local flexibility market: the DSO buys relief for its predicted
    violations at least cost.

    Variables: q[s, b] >= 0 for each side and DER, unmet[s, k] >= 0 for each need row.
    min sum price_b q[s, b] + sum penalty_s unmet[s, k]
    s.t. sum_s q[s, b] <= mw_b;  sum_b effect[k, b] q[s, b] + unmet[s, k] >= need[s, k].
    The constraint matrix is sparse: a few thousand bids would need gigabytes dense. A device's
    up and down bids are mutually exclusive (:func:`_exclusive_solve`).
    """
    n, n_sides = len(der), len(sides)
    price = der.price_eur_per_mwh.to_numpy(float)
    cap = np.clip(der.mw.to_numpy(float), 0.0, None)
    rows = sum(len(s.need_mw) for s in sides)
    cost = np.concatenate(
        [
            np.tile(price, n_sides),
            np.concatenate([np.full(len(s.need_mw), s.penalty_eur_per_h) for s in sides]),
        ]
    )
    n_var = n_sides * n + rows
    a_cap = sparse.coo_array(
        (np.ones(n_sides * n), (np.tile(np.arange(n), n_sides), np.arange(n_sides * n))),
        shape=(n, n_var),
    )
    r, c, v, row = [], [], [], 0
    for i, s in enumerate(sides):
        k = len(s.need_mw)
        effect = sparse.coo_array(np.asarray(s.effect, dtype=float))
        r += [row + effect.row, row + np.arange(k)]
        c += [i * n + effect.col, n_sides * n + row + np.arange(k)]
        v += [-effect.data, -np.ones(k)]
        row += k
    a_need = sparse.coo_array(
        (np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(rows, n_var)
    )
    a_ub = sparse.vstack([a_cap, a_need], format="csr")
    b_ub = np.r_[cap, -np.concatenate([s.need_mw for s in sides])]
    x, message = _exclusive_solve(der, n_sides, cost, a_ub, b_ub)
    if x is None:
        zero = {s.side: np.zeros(n) for s in sides}
        return Use(zero, ok=False, message=f"priority allocation LP failed: {message}")
    return Use({s.side: x[i * n : (i + 1) * n] for i, s in enumerate(sides)})


def _exclusive_solve(der, n_sides, cost, a_ub, b_ub) -> tuple[np.ndarray | None, str]:
    """Solve ``min cost x, a_ub x <= b_ub, x >= 0`` with a device's up and down exclusive.

    The LP first; where it uses a device both ways (by any sides), a MILP with one binary
    per such device (up or down) decides, until no device is used both ways (each round adds
    at least one device to those decided). Returns x, or None and why.
    """
    n = len(der)
    bid_id, cap = der.bid_id.to_numpy(np.int64), b_ub[:n]
    device = np.where(bid_id >= 0, device_of(bid_id), -1)
    is_up = (der.direction == UP).to_numpy()
    deciding = np.zeros(n, dtype=bool)
    n_var = a_ub.shape[1]
    x, message = _solve(cost, a_ub, b_ub, np.full(n_var, np.inf))
    while x is not None:
        per_der = x[: n_sides * n].reshape(n_sides, n).sum(axis=0)
        washing = washed_devices(device, is_up, per_der)
        if not washing.any():
            return x[:n_var], ""
        deciding |= washing
        rows = np.flatnonzero(deciding)
        devices, which = np.unique(device[rows], return_inverse=True)
        k, m = len(devices), len(rows)
        # per deciding DER b of device d: sum_s q[s, b] <= cap_b z_d (up), cap_b (1 - z_d) (down)
        cols = (np.arange(n_sides)[:, None] * n + rows[None, :]).ravel()
        pick = sparse.coo_array(
            (np.ones(n_sides * m), (np.tile(np.arange(m), n_sides), cols)), shape=(m, n_var)
        )
        signed = np.where(is_up[rows], -cap[rows], cap[rows])
        z = sparse.coo_array((signed, (np.arange(m), which)), shape=(m, k))
        a = sparse.vstack([sparse.hstack([a_ub, sparse.csr_array((a_ub.shape[0], k))]),
                           sparse.hstack([pick, z])], format="csr")  # fmt: skip
        upper = np.r_[b_ub, np.where(is_up[rows], 0.0, cap[rows])]
        x, message = _solve(
            np.r_[cost, np.zeros(k)], a, upper, np.r_[np.full(n_var, np.inf), np.ones(k)], k
        )
    return None, message


def _solve(
    cost: np.ndarray, a: sparse.sparray, upper: np.ndarray, col_upper: np.ndarray, binaries: int = 0
) -> tuple[np.ndarray | None, str]:
    """``min cost x, a x <= upper, 0 <= x <= col_upper``, the last ``binaries`` columns
    integer: x, or None and HiGHS's model status. HiGHS is called directly, column-wise: SciPy's
    ``linprog`` spent three quarters of a quickstart call checking its options one by one and
    reading the bound duals column by column, none of which is used here."""
    a = sparse.csc_array(a)
    n_col, n_row = a.shape[1], a.shape[0]
    integrality = np.zeros(n_col, dtype=np.int32)
    integrality[n_col - binaries :] = int(highspy.HighsVarType.kInteger)
    h = kernels.one_thread_highs()  # the default simplex_strategy: the dual simplex
    h.passModel(
        n_col,
        n_row,
        a.nnz,
        int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        np.asarray(cost, dtype=float),
        np.zeros(n_col),
        np.asarray(col_upper, dtype=float),
        np.full(n_row, -highspy.kHighsInf),
        np.asarray(upper, dtype=float),
        a.indptr.astype(np.int32),
        a.indices.astype(np.int32),
        a.data.astype(float),
        integrality,
    )
    with kernels.timed("solves"):
        h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        return None, h.modelStatusToString(status)
    return np.asarray(h.getSolution().col_value, dtype=float), ""


def priority_rows(rule, dso, bid_ids, requested, dso_mw, tso_mw) -> pd.DataFrame:
    """Rows of the ``priority`` table (without the period): who got each contested or used DER
    of a DSO. DER nobody asked for or used are left out."""
    columns = {
        "bid_id": np.asarray(bid_ids, np.int64),
        "dso_requested_mw": np.asarray(requested, float),
        "dso_mw": np.asarray(dso_mw, float),
        "tso_mw": np.asarray(tso_mw, float),
    }
    used = np.flatnonzero(
        (columns["dso_requested_mw"] > 0) | (columns["dso_mw"] > 0) | (columns["tso_mw"] > 0)
    )
    n = len(used)
    return pd.DataFrame(
        {
            "dso": np.full(n, dso, dtype=object),
            "rule": np.full(n, rule, dtype=object),
            **{c: values[used] for c, values in columns.items()},
        }
    )


def taken(dispatch: pd.DataFrame, bid_ids: pd.Series | np.ndarray) -> np.ndarray:
    """MW of each of ``bid_ids`` in a dispatch table (0 where absent)."""
    return sums_at(dispatch.bid_id.to_numpy(np.int64), dispatch.mw.to_numpy(float), bid_ids)
