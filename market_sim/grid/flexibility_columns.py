"""The decision variables of a P-Q flexibility area's LPs and the limits on them.

Columns ``z``: every bid's activation (0..validated MW), then the reactive set-point change of
every PV sgen and storage that bids (table convention). The network rows depend on these only
through the injection change at each solver bus, so they act on bus variables ``w = w_map z``
(one per bus with active, one per bus with reactive flexibility): dense rows over half the
columns instead of over all of them. An inverter's capability circle ``p^2 + q^2 <= sn^2``
becomes an inscribed polygon (:func:`capability_rows`), so that linear rows never allow more
than the rating.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from market_sim.grid.constraints import BidLayout
from market_sim.grid.network import DistributionNetwork
from market_sim.grid.powerflow import PowerFlowDetail
from market_sim.grid.sensitivities import element_case_bus
from market_sim.types import Injections

#: Sides of the polygon inscribed in each inverter's capability circle (a multiple of 4).
CIRCLE_SIDES = 16
#: Apparent power may exceed an inverter's rating by this relative amount (rounding only).
RATING_TOL = 1e-9
#: Reactive injection per unit of the table's own ``q_mvar`` (sgen: generator convention).
Q_INJ_SIGN = {"sgen": 1.0, "storage": -1.0}


@dataclass(frozen=True)
class Columns:
    """The LP's columns: bids (0..validated MW) then reactive devices (dq, table convention)."""

    layout: BidLayout
    ub_x: np.ndarray  # validated MW per bid, 0 for bids that cannot act
    q_tables: np.ndarray  # table of each reactive device
    q_positions: np.ndarray
    sn: np.ndarray
    p0: np.ndarray  # baseline p of each reactive device (table convention)
    q0: np.ndarray
    bid_device: np.ndarray  # reactive device of each bid, -1 if none
    w_p_bus: np.ndarray  # solver bus of each active-power bus variable
    w_q_bus: np.ndarray  # solver bus of each reactive-power bus variable
    w_map: sp.csr_matrix  # [n_w, n]: bus injection changes w = w_map z

    @property
    def n_x(self) -> int:
        return len(self.ub_x)

    @property
    def n(self) -> int:
        return len(self.ub_x) + len(self.sn)

    def injections(self, baseline: Injections, z: np.ndarray) -> Injections:
        """Baseline with bids activated by ``z[:n_x]`` MW and reactive set-points moved."""
        inj = self.layout.injections(baseline, z[: self.n_x])
        dq = z[self.n_x :]
        for table in Q_INJ_SIGN:
            sel = self.q_tables == table
            if sel.any():
                np.add.at(inj.q_mvar[table], self.q_positions[sel], dq[sel])
        return inj

    def within_ratings(self, inj: Injections) -> bool:
        """Every reactive device inside its capability circle (or no worse than at baseline)."""
        for table in Q_INJ_SIGN:
            sel = self.q_tables == table
            if sel.any():
                pos = self.q_positions[sel]
                s = np.hypot(inj.p_mw[table][pos], inj.q_mvar[table][pos])
                allowed = np.fmax(self.sn[sel], np.hypot(self.p0[sel], self.q0[sel]))
                if np.any(s > allowed * (1 + RATING_TOL) + 1e-9):
                    return False
        return True


def columns_of(
    dn: DistributionNetwork,
    baseline: Injections,
    bids: pd.DataFrame,
    base: PowerFlowDetail,
    q: bool,
) -> Columns:
    """Columns of the LP: every bid, and (if ``q``) every PV sgen and storage that bids."""
    net = dn.net
    layout = BidLayout.of(dn, bids)
    bus = layout.case_bus(base)
    ub_x = np.where((bus >= 0) & (layout.positions >= 0), np.clip(layout.offered, 0, None), 0.0)
    ub_x = np.nan_to_num(ub_x)
    tables, positions = [], []
    if q and len(bids):
        for table in Q_INJ_SIGN:
            sel = (layout.tables == table) & (layout.positions >= 0)
            pos = np.unique(layout.positions[sel])
            if not len(pos):
                continue
            df = net[table]
            sn = pd.to_numeric(df["sn_mva"], errors="coerce").to_numpy(float)[pos]
            ok = (
                np.isfinite(sn)
                & (sn > 0)
                & df["in_service"].to_numpy(bool)[pos]
                & (element_case_bus(base, table, pos) >= 0)
            )
            if table == "sgen":
                ok &= dn.pv_mask[pos]
            tables += [table] * int(ok.sum())
            positions += pos[ok].tolist()
    q_tables = np.array(tables, dtype=object)
    q_positions = np.array(positions, dtype=np.int64)
    sn = np.array([float(net[t]["sn_mva"].iloc[p]) for t, p in zip(tables, positions, strict=True)])
    p0 = np.array([baseline.p_mw[t][p] for t, p in zip(tables, positions, strict=True)])
    q0 = np.array([baseline.q_mvar[t][p] for t, p in zip(tables, positions, strict=True)])
    lookup = {(t, int(p)): i for i, (t, p) in enumerate(zip(tables, positions, strict=True))}
    bid_device = np.array(
        [lookup.get((t, int(p)), -1) for t, p in zip(layout.tables, layout.positions, strict=True)],
        dtype=np.int64,
    )
    # Bus variables: the network rows depend on bids and devices only through the injection
    # change at their bus, so they are written on one variable per bus (dense rows over ~half
    # the columns), linked to the bids and devices by sparse equalities.
    active = ub_x > 0
    w_p_bus, p_of = np.unique(bus[active], return_inverse=True)
    qbus = np.array(
        [
            int(element_case_bus(base, t, np.array([p]))[0])
            for t, p in zip(tables, positions, strict=True)
        ],
        dtype=np.int64,
    )
    w_q_bus, q_of = np.unique(qbus, return_inverse=True)
    n_x = len(ub_x)
    rows = np.r_[p_of, len(w_p_bus) + q_of]
    cols = np.r_[np.flatnonzero(active), n_x + np.arange(len(qbus))]
    vals = np.r_[layout.inj_sign[active], [Q_INJ_SIGN[t] for t in tables]]
    w_map = sp.csr_matrix(
        (vals, (rows, cols)), shape=(len(w_p_bus) + len(w_q_bus), n_x + len(qbus))
    )
    return Columns(
        layout, ub_x, q_tables, q_positions, sn, p0, q0, bid_device, w_p_bus, w_q_bus, w_map
    )


def bus_columns(der: Columns, d_p: np.ndarray, d_q: np.ndarray) -> np.ndarray:
    """Sensitivity rows (per solver bus) on the LP's bus variables (P buses, then Q buses)."""
    return np.hstack([d_p[:, der.w_p_bus], d_q[:, der.w_q_bus]])


def capability_rows(der: Columns) -> tuple[np.ndarray, np.ndarray]:
    """Inscribed-polygon rows of every device's capability circle, in LP columns.

    With device p = p0 + sum(delta_sign x) over its bids and q = q0 + dq (table convention):
    cos(phi) p + sin(phi) q <= sn cos(pi / sides). The right-hand side is never below the
    baseline's value, so the baseline stays feasible even for a device at its rating. Only the
    sides whose extent in p meets the device's reachable p range can bind (a PV inverter that
    can only curtail needs four of sixteen), so only those are written.
    """
    n_dev = len(der.sn)
    if not n_dev:
        return np.zeros((0, der.n)), np.zeros(0)
    # Side normals half a step off the axes put polygon corners at (+-sn, 0) and (0, +-sn):
    # full active power at unity power factor (a storage's whole bid) stays reachable.
    phi = 2 * np.pi * (np.arange(CIRCLE_SIDES) + 0.5) / CIRCLE_SIDES
    c, s = np.cos(phi), np.sin(phi)
    half = np.pi / CIRCLE_SIDES
    ends = np.sort(np.c_[np.cos(phi - half), np.cos(phi + half)], axis=1)
    inner = np.cos(half)
    a_rows, rhs = [], []
    for i in range(n_dev):
        bids = np.flatnonzero(der.bid_device == i)
        move = der.layout.delta_sign[bids] * der.ub_x[bids]
        p_lo = (der.p0[i] + np.clip(move, None, 0).sum()) / der.sn[i]
        p_hi = (der.p0[i] + np.clip(move, 0, None).sum()) / der.sn[i]
        sides = np.flatnonzero((ends[:, 1] >= p_lo - 1e-9) & (ends[:, 0] <= p_hi + 1e-9))
        a = np.zeros((len(sides), der.n))
        a[:, bids] = np.outer(c[sides], der.layout.delta_sign[bids])
        a[:, der.n_x + i] = s[sides]
        at_base = c[sides] * der.p0[i] + s[sides] * der.q0[i]
        a_rows.append(a)
        rhs.append(np.maximum(der.sn[i] * inner, at_base) - at_base)
    return np.vstack(a_rows), np.concatenate(rhs)
