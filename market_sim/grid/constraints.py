"""Network limits as a validator sees them, and the per-direction outcome every method returns.

Shared by all validation methods (:mod:`.validation`, :mod:`.linear_opf`, :mod:`.ac_opf`) so
that they enforce exactly the same limits and report in the same shape:

* *effective limits* (:class:`Caps`): the operating limits, relaxed to the baseline level where
  the baseline already violates them (bids may not make a pre-existing violation worse);
* :func:`violations`: every monitored constraint of a power flow beyond those limits, named;
* :class:`BidLayout`: where each bid acts (table position, solver bus, sign);
* :class:`DirectionOutcome`: what validating one direction produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from market_sim.columns import text
from market_sim.grid.flow_summary import VIOLATION_TOL
from market_sim.grid.injections import UP_SIGN
from market_sim.grid.network import DistributionNetwork, element_positions
from market_sim.grid.powerflow import (
    PowerFlowDetail,
    memoised,
    monitored,
    run_power_flow_detailed,
)
from market_sim.grid.sensitivities import element_case_bus
from market_sim.types import ELEMENT_TABLES, UP, Injections, Limits

#: Quantities below this are validated as zero (MW); 1 kW is below any metering resolution.
MIN_MW = 1e-3
#: Constraint kinds and the net table each refers to.
KIND_TABLE = {"vmax": "bus", "vmin": "bus", "line": "line", "trafo": "trafo"}
#: The kinds in the order violations are listed.
KINDS = tuple(KIND_TABLE)


@dataclass(frozen=True)
class Caps:
    """Effective limits: the operating limits, relaxed to the baseline level where violated.

    NaN means not monitored (HV buses, out-of-service branches). ``_names`` keeps the names
    :meth:`names` formatted (per kind, by position): the caps belong to one network.
    """

    vmax: np.ndarray
    vmin: np.ndarray
    line: np.ndarray
    trafo: np.ndarray
    _names: dict[str, dict[int, str]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def names(self, net: object, kind: str, pos: np.ndarray) -> list[str]:
        """:func:`constraint_names` of the constraints of ``kind`` at ``pos``, each formatted
        once: a validation meets the same violations at many of its power flows."""
        known = self._names.setdefault(kind, {})
        wanted = pos.tolist()
        missing = [p for p in wanted if p not in known]
        if missing:
            at = np.array(missing, dtype=np.int64)
            raw = self.vmin if kind == "vmin" else getattr(self, kind)
            known.update(zip(missing, constraint_names(net, kind, at, raw[at]), strict=True))
        return [known[p] for p in wanted]

    @cached_property
    def stacked(self) -> tuple[np.ndarray, dict[str, slice]]:
        """:func:`cap_of` of every kind end to end (in :data:`KINDS` order) and each kind's
        slice of it: a power flow's excesses over all limits come from one subtraction."""
        caps = [cap_of(self, kind) for kind in KINDS]
        ends = np.cumsum([0, *(len(c) for c in caps)]).tolist()
        where = {kind: slice(ends[i], ends[i + 1]) for i, kind in enumerate(KINDS)}
        return np.concatenate(caps), where


@dataclass(frozen=True)
class Violation:
    kind: str  # vmax, vmin, line, trafo
    pos: int  # position in net.bus / net.line / net.trafo
    overshoot: float
    name: str


def effective_limits(dn: DistributionNetwork, base: PowerFlowDetail, limits: Limits) -> Caps:
    """Limits of ``limits`` relaxed to the baseline where the baseline already violates them."""
    mon = monitored(dn)
    vm = np.where(mon.bus, base.vm_pu, np.nan)
    line_on, trafo_on = mon.line, mon.trafo
    return Caps(
        vmax=np.fmax(np.where(np.isfinite(vm), limits.vm_max_pu, np.nan), vm),
        vmin=np.fmin(np.where(np.isfinite(vm), limits.vm_min_pu, np.nan), vm),
        line=np.where(
            line_on, np.fmax(limits.max_loading_percent, base.line_loading_percent), np.nan
        ),
        trafo=np.where(
            trafo_on,
            np.fmax(limits.trafo_limits(len(trafo_on)), base.trafo_loading_percent),
            np.nan,
        ),  # fmt: skip
    )


def constraint_name(net: object, kind: str, pos: int, cap: float) -> str:
    """Readable name of a constraint: element index, its name in the net, the limit."""
    return constraint_names(net, kind, np.array([pos]), np.array([cap]))[0]


def constraint_names(net: object, kind: str, pos: np.ndarray, caps: np.ndarray) -> list[str]:
    """:func:`constraint_name` of many constraints of one kind, the table read once (the
    per-name pandas lookups were a tenth of a validation's time)."""
    table = net[KIND_TABLE[kind]]  # type: ignore[index]
    index = table.index[pos]
    labels = table["name"].to_numpy()[pos] if "name" in table else [None] * len(pos)
    return [
        _name(kind, idx, label, float(cap))
        for idx, label, cap in zip(index, labels, caps, strict=True)
    ]


def _name(kind: str, idx: object, label: object, cap: float) -> str:
    tag = f"{KIND_TABLE[kind]} {idx}" + (f" ({label})" if isinstance(label, str) else "")
    if kind == "vmax":
        return f"{tag} vm>{cap:.4f}"
    if kind == "vmin":
        return f"{tag} vm<{cap:.4f}"
    return f"{tag} loading>{cap:.1f}%"


def values(d: PowerFlowDetail, kind: str) -> np.ndarray:
    """The constrained quantity of a kind, oriented so that *larger is worse*."""
    if kind == "vmax":
        return d.vm_pu
    if kind == "vmin":
        return -d.vm_pu
    return d.line_loading_percent if kind == "line" else d.trafo_loading_percent


def cap_of(caps: Caps, kind: str) -> np.ndarray:
    """Limit of a kind in the orientation of :func:`values`."""
    return -caps.vmin if kind == "vmin" else getattr(caps, kind)


def excess(d: PowerFlowDetail, caps: Caps, kind: str) -> np.ndarray:
    """``values(d, kind) - cap_of(caps, kind)``: how far each constraint is beyond its limit
    (NaN: not monitored or not computed), read-only: a view of :func:`_excess_all`."""
    return stacked_excess(d, caps)[caps.stacked[1][kind]]


def stacked_excess(d: PowerFlowDetail, caps: Caps) -> np.ndarray:
    """:func:`excess` of every kind end to end (:attr:`Caps.stacked`), read-only."""
    return _excess_all(d, caps)[0]


def _excess_all(d: PowerFlowDetail, caps: Caps) -> tuple[np.ndarray, np.ndarray]:
    """:func:`excess` of every kind end to end (in :data:`KINDS` order, see
    :attr:`Caps.stacked`) and the positions in it beyond ``VIOLATION_TOL``, kept on ``d``: a
    validation checks a point for violations and then screens it, and screens its baseline
    in every round. The same numbers as kind by kind (one subtraction per element)."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        at = np.concatenate([values(d, kind) for kind in KINDS])
        over = at - caps.stacked[0]
        over.flags.writeable = False
        return over, np.flatnonzero(over > VIOLATION_TOL)  # NaN: not monitored, never above

    return memoised(d, "excess", caps, compute)


def violations(dn: DistributionNetwork, d: PowerFlowDetail, caps: Caps) -> list[Violation]:
    """Constraints of ``d`` beyond the effective limits (NaN limits are not monitored)."""
    over, bad_all = _excess_all(d, caps)
    out: list[Violation] = []
    if not len(bad_all):
        return out
    for kind, where in caps.stacked[1].items():
        lo, hi = np.searchsorted(bad_all, (where.start, where.stop))
        if lo == hi:
            continue
        bad = bad_all[lo:hi] - where.start
        names = caps.names(dn.net, kind, bad)
        out += [
            Violation(kind, int(pos), float(over[where.start + pos]), name)
            for pos, name in zip(bad, names, strict=True)
        ]
    return out


def within(dn: DistributionNetwork, d: PowerFlowDetail, caps: Caps) -> bool:
    return d.converged and not violations(dn, d, caps)


@dataclass(frozen=True)
class BidLayout:
    """Where the bids of one direction act.

    ``delta_sign`` is the change of the table's own ``p_mw`` per MW validated; ``inj_sign`` the
    change of the bus injection (+1 up, -1 down).
    """

    tables: np.ndarray
    positions: np.ndarray
    delta_sign: np.ndarray
    inj_sign: np.ndarray
    offered: np.ndarray
    #: :meth:`case_bus` per power-flow model (one per tap setting), kept with the model.
    _buses: dict[int, tuple[object, np.ndarray]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def of(
        cls, dn: DistributionNetwork, bids: pd.DataFrame, rows: slice = slice(None)
    ) -> BidLayout:
        """The layout of a bid table, or of its rows ``rows``: the bids of one network among
        those of several in one table, whose columns pandas then reads once for all."""
        tables, directions = text(bids, "element")[rows], text(bids, "direction")[rows]
        positions = element_positions(dn, tables, bids["element_index"].to_numpy()[rows])
        return cls.at(tables, positions, directions, bids["mw"].to_numpy(float)[rows])

    @classmethod
    def at(
        cls, tables: np.ndarray, positions: np.ndarray, directions: np.ndarray, mw: np.ndarray
    ) -> BidLayout:
        """The layout of bids given as columns (element table, its position, direction, MW):
        for a caller that has read the bid book's columns already."""
        sign = np.where(directions == UP, 1.0, -1.0)
        delta = np.array([UP_SIGN[t] for t in tables]) * sign if len(tables) else sign
        return cls(tables, positions, delta, sign, mw)

    def injections(self, baseline: Injections, x: np.ndarray) -> Injections:
        """Baseline with every bid activated by ``x`` MW."""
        inj = baseline.copy()
        for table, sel, positions, delta in self._per_table:
            np.add.at(inj.p_mw[table], positions, delta * x[sel])
        return inj

    @cached_property
    def _per_table(self) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        """Per element table with bids: the bids' mask, positions and ``delta_sign`` (a
        validation activates the same bids at every power flow it runs)."""
        out = []
        for table in ELEMENT_TABLES:
            sel = self.tables == table
            if sel.any():
                out.append((table, sel, self.positions[sel], self.delta_sign[sel]))
        return out

    def case_bus(self, d: PowerFlowDetail) -> np.ndarray:
        """Solver bus of every bid (-1 if disconnected or no fast model), read-only.

        Found once per power-flow model: a validation asks at every power flow it linearises.
        """
        model = d.state.model if d.state is not None else None
        kept = self._buses.get(id(model))
        if kept is None or kept[0] is not model:
            out = np.full(len(self.offered), -1, dtype=np.int64)
            for table in ELEMENT_TABLES:
                sel = self.tables == table
                if sel.any():
                    out[sel] = element_case_bus(d, table, self.positions[sel])
            out.flags.writeable = False
            kept = self._buses[id(model)] = (model, out)
        return kept[1]


@dataclass
class DirectionOutcome:
    """Result of validating the bids of one direction (aligned with that direction's rows)."""

    x: np.ndarray
    reasons: list[str]
    converged: bool
    ac_iterations: int
    binding: list[str] = field(default_factory=list)
    message: str = ""
    lp_solves: int = 0

    @classmethod
    def rejected(
        cls, n: int, why: str, ac_iterations: int, binding: list[str] | None = None
    ) -> DirectionOutcome:
        """Validate nothing, with the reason on every bid."""
        return cls(np.zeros(n), [f"rejected: {why}"] * n, False, ac_iterations, binding or [], why)


def check(
    dn: DistributionNetwork,
    layout: BidLayout,
    baseline: Injections,
    x: np.ndarray,
    limits: Limits,
    warm: PowerFlowDetail | None = None,
) -> PowerFlowDetail:
    """AC power flow of the baseline with the bids activated by ``x``."""
    return run_power_flow_detailed(
        dn, layout.injections(baseline, x), limits, write=False, warm_start=warm
    )
