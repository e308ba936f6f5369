"""The balancing market: TER and DER offers cleared against the TSO's need on a DC network.

A DC optimal power flow over deviations around the energy schedule, declared once per run as a
pyomo model and loaded once into HiGHS (:class:`~market_sim.markets.persistent.LoadedModel`). A
period writes only the numbers that changed (column bounds and costs for offers, row bounds for
needs and flow limits) straight into the HiGHS instance as arrays and re-solves from the
previous basis; pyomo's own persistent parameter updates re-evaluated every mutable expression
one by one and cost more than the solve itself.

Units and signs (see :mod:`market_sim.types`): MW with injection positive, EUR/MWh paid by the
buyer, objectives in EUR/h (the caller multiplies by the period length in hours). Nodal prices
are duals of the nodal balance: the change of the objective in EUR/h per MW of extra need for
injection, positive when more need costs more.

A failed or infeasible solve never raises: the result has ``ok=False`` and a message, so the
engine can record an event and go on. Invalid inputs (wrong shape, unknown bus, bad direction,
non-finite numbers) raise ValueError, because they are programming errors, not market outcomes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import cached_property

import highspy
import numpy as np
import pandas as pd
import pyomo.environ as pyo
from scipy import sparse

from market_sim.columns import Columns, new_frame
from market_sim.markets.dc_model import (
    HIGHS_OPTIONS,
    count,
    define_dc_network,
    define_flow_limits,
    net_outflow,
)
from market_sim.markets.devices import washed_devices
from market_sim.markets.offers import MW_TOL, OFFER_COLUMNS
from market_sim.markets.persistent import LoadedModel, Matrix
from market_sim.markets.transmission import TransmissionNetwork
from market_sim.types import DOWN, UP

logger = logging.getLogger(__name__)

#: Cost added to every accepted MW of a balancing offer (EUR/MWh). TER offers come in up/down
#: pairs at +mc/-mc, so without it accepting both halves of a pair ("wash trade") costs exactly
#: nothing and the solver may report activations that cancel out. It shifts nodal prices by at
#: most this much and is not part of the reported cost.
TIE_BREAK_EUR_PER_MWH = 1e-6


@dataclass(frozen=True)
class BalancingResult:
    """Outcome of the balancing market for one period.

    ``accepted``: one row per offer with accepted MW > 0: offer_id, bus, direction, mw
    (accepted, >= 0), price_eur_per_mwh (the offer's own price), bus_price_eur_per_mwh (the
    nodal price at its bus). ``price_eur_per_mwh``: nodal price of injection per bus (dual of
    the nodal balance: EUR/h per MW of extra need for injection). Pay-as-cleared settlement at
    that price means an up offer earns ``+price`` and a down offer earns ``-price`` per MWh, so
    the marginal offer of either direction clears at its own price. ``unserved_*_mw``: need that
    no offer covered, priced at VOLL. ``cost_eur``: objective in EUR per hour of the period,
    sum(price * MW) + VOLL * unserved; multiply by the period length in hours. ``offers``: the
    offer book as cleared (TER and DER offers; TER rows carry their ``element``), which
    settlement prices. ``relaxed_branches``: branches whose base flow already exceeded their
    rating, so their limit was relaxed to the base-flow magnitude. ``reserve_shortfall_mw``: the
    reserve the offers could not hold back (set by
    :class:`~market_sim.markets.tso_markets.TsoMarkets`, which adds the reserve rows).

    What the LP was built from, so that it can be recorded and rebuilt: ``need_mw`` per bus,
    ``base_flow_mw`` and ``flow_limit_mw`` (:meth:`BalancingMarket.flow_limits`) per branch,
    ``offer_rows = (A, b)`` the period's rows ``A q <= b`` over ``offers`` (scipy.sparse
    CSR, possibly with stored zeros), and ``row_labels`` (kind, dso, element, element_index of
    each row, set by :class:`~market_sim.markets.tso_markets.TsoMarkets`, which stacks them: a
    table, or its columns as arrays, :func:`~.tso_markets.row_label_columns`),
    ``voll_eur_per_mwh`` the price of unserved need.
    ``row_duals``: dual of each of the period's ``offer_rows`` (EUR/h per MW of its bound, <= 0
    where it binds), from which the caller prices what those rows mean (the DLMP).
    ``der_price_eur_per_mwh``: price of injection at each DER bid's own location (index
    bid_id), where the clearing priced DER individually (TSO-managed: the DLMP at its
    distribution bus, set by :func:`~market_sim.markets.central.integrated_clearing`); a DER
    not in it is priced at its interface bus, and every DER where it is None (not an empty
    Series by default: a result is made every period, and that Series cost 15 us of the
    result's 95).
    """

    ok: bool
    message: str
    accepted: pd.DataFrame
    price_eur_per_mwh: np.ndarray
    unserved_up_mw: float
    unserved_down_mw: float
    cost_eur: float
    solve_time_s: float
    n_variables: int
    n_constraints: int
    offers: pd.DataFrame
    relaxed_branches: tuple[str, ...] = field(default=())
    reserve_shortfall_mw: float = 0.0
    need_mw: np.ndarray | None = None
    base_flow_mw: np.ndarray | None = None
    flow_limit_mw: np.ndarray | None = None
    offer_rows: tuple[sparse.csr_array, np.ndarray] | None = None
    row_labels: Columns | None = None
    voll_eur_per_mwh: float = float("nan")
    row_duals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    der_price_eur_per_mwh: pd.Series | None = None


def _as_sparse(matrix: Matrix, shape: tuple[int, int]) -> sparse.csr_array:
    """Period rows as sparse CSR, not copied where they already are (the solver got them
    without their stored zeros; a reader drops those too)."""
    if not shape[0]:
        return sparse.csr_array(shape)
    return sparse.csr_array(matrix)


def _devices(offers: pd.DataFrame) -> np.ndarray:
    """The device of each offer (``device`` column, -1 where none): its directions exclude
    each other."""
    if "device" not in offers.columns:
        return np.full(len(offers), -1, dtype=np.int64)
    device = offers["device"].to_numpy(dtype=float)
    return np.where(np.isnan(device), -1.0, device).astype(np.int64)


@dataclass(frozen=True)
class OfferBook:
    """An offer table and the columns a clearing computes with, as arrays: pandas column
    access and comparisons, repeated in every step, cost more than the LP's array writes, and
    a caller that built the table from arrays (:func:`~.tso_markets.offer_book`) hands them
    on instead of having them read back. ``table`` is what the result carries as its book."""

    table: pd.DataFrame
    offer_id: np.ndarray
    bus: np.ndarray
    direction: np.ndarray  # object: up or down
    mw: np.ndarray
    price: np.ndarray
    device: np.ndarray  # -1: no device

    @classmethod
    def of(cls, offers: pd.DataFrame) -> OfferBook:
        """The book of a table of the columns :data:`~.offers.OFFER_COLUMNS` (and ``device``)."""
        missing = [c for c in OFFER_COLUMNS if c not in offers.columns]
        if missing:
            raise ValueError(f"offers lack columns {missing}")
        return cls(
            table=offers,
            offer_id=offers["offer_id"].to_numpy(dtype=np.int64),
            bus=offers["bus"].to_numpy(dtype=np.int64),
            direction=offers["direction"].to_numpy(dtype=object, na_value=None),
            mw=offers["mw"].to_numpy(dtype=float),
            price=offers["price_eur_per_mwh"].to_numpy(dtype=float),
            device=_devices(offers),
        )

    @cached_property
    def is_up(self) -> np.ndarray:
        return self.direction == UP


def _empty_accepted() -> pd.DataFrame:
    """The accepted table of a failed clearing (the columns of an accepted one)."""
    return pd.DataFrame(
        {
            "offer_id": pd.Series(dtype="int64"),
            "bus": pd.Series(dtype="int64"),
            "direction": pd.Series(dtype="string"),
            "mw": pd.Series(dtype="float64"),
            "price_eur_per_mwh": pd.Series(dtype="float64"),
            "bus_price_eur_per_mwh": pd.Series(dtype="float64"),
        }
    )


#: What :meth:`BalancingMarket._build` makes for one slot capacity (and keeps).
_BUILT = (
    "_slot_start",
    "_slot_bus",
    "_slot_sign",
    "model",
    "n_variables",
    "n_constraints",
    "_lp",
    "_q_cols",
    "_unserved_up_cols",
    "_unserved_down_cols",
    "_balance_rows",
    "_flow_rows",
)


class BalancingMarket:
    """Clears a period's balancing offers: a DC OPF over deviations around the schedule.

    Offers sit in fixed *slots*: every bus has ``capacity[bus, direction]`` slots, each a
    variable ``q_s`` in ``[0, mw_s]`` with objective coefficient ``price_s``. The model is
    declared in pyomo and loaded into HiGHS once; a period writes the slots' column bounds and
    costs (unused slots get 0 MW), the needs (balance row bounds) and the flow limits (flow-limit
    row bounds), only where they changed, and HiGHS re-solves from the previous basis. Every
    bus starts with ``max(slots_per_bus, generators at the bus)`` slots per direction, so TER
    offers always fit; if a bus gets more offers in a direction than it has slots, that capacity
    is doubled until it fits and the model is rebuilt (logged at DEBUG).

    Per bus n: ``sum(up q) - sum(down q) + unserved_up_n - unserved_down_n - (net outflow of
    deviation flows) = need_n``; per rated branch: ``-R <= base_flow + deviation_flow <= R``
    with ``R = max(rating, |base_flow|)``. Objective (EUR/h): ``sum(price * q) + voll *
    sum(unserved_up + unserved_down)``.
    """

    def __init__(
        self,
        network: TransmissionNetwork,
        voll_eur_per_mwh: float,
        slots_per_bus: int = 2,
    ):
        if not voll_eur_per_mwh > 0:
            raise ValueError("voll_eur_per_mwh must be positive")
        self.network = network
        self.voll_eur_per_mwh = float(voll_eur_per_mwh)
        gens_at_bus = np.bincount(
            network.generators["bus_pos"].to_numpy(dtype=np.int64), minlength=network.n_buses
        )
        per_bus = np.maximum(max(int(slots_per_bus), 1), gens_at_bus)
        self.capacity = np.repeat(per_bus[:, None], 2, axis=1).astype(np.int64)
        self._initial_capacity = self.capacity.copy()
        self._rating = network.branches["rating_mw"].to_numpy()
        self._rated = np.flatnonzero(np.isfinite(self._rating))
        #: capacity (bytes) -> the model built for it (:data:`_BUILT`), see :meth:`_build`
        self._built: dict[bytes, dict[str, object]] = {}
        self._build()

    def forget_warm_start(self) -> None:
        """Clear the next period as a freshly built market would: from scratch, with the
        initial slot capacity (grown capacity is solver state too: it shapes the LP)."""
        if np.array_equal(self.capacity, self._initial_capacity):
            self._lp.forget_basis()
            return
        self.capacity = self._initial_capacity.copy()
        self._build()

    # ---- model -------------------------------------------------------------------------------

    def _build(self) -> None:
        """The model and its solver for the current slot capacity, as freshly built.

        Each capacity's model is built once and kept: a checkpoint returns to the initial
        capacity and the day's first overflows grow it again, so every day rebuilt the same
        few models, at about 25 ms each (pyomo's declaration and translation). A kept one
        is taken back in a new HiGHS instance loaded with the LP it was built with
        (:meth:`~.persistent.LoadedModel.reset`): what a new build would load.
        """
        key = self.capacity.tobytes()
        kept = self._built.get(key)
        if kept is None:
            self._new_model()
            self._built[key] = {name: getattr(self, name) for name in _BUILT}
            return
        for name, value in kept.items():
            setattr(self, name, value)
        self._lp.reset()

    def _new_model(self) -> None:
        """Build the model and its solver for the current slot capacity."""
        cap = self.capacity.ravel()  # key = 2 * bus_pos + (0 up | 1 down)
        self._slot_start = np.concatenate([[0], np.cumsum(cap)[:-1]])
        key = np.repeat(np.arange(len(cap)), cap)
        self._slot_bus = key // 2
        self._slot_sign = np.where(key % 2 == 0, 1.0, -1.0)

        m = pyo.ConcreteModel(name=f"balancing {self.network.name}")
        out_br, in_br = define_dc_network(m, self.network, with_shift=False)
        self._define_slots(m)
        self._define_unserved(m)
        define_flow_limits(m, self._rating)  # for a zero base flow; clear() writes the period's
        self._define_balance(m, out_br, in_br)
        self._define_objective(m)
        self.model = m
        self.n_variables, self.n_constraints = count(m)
        self._lp = LoadedModel(m, HIGHS_OPTIONS)
        self._q_cols = self._lp.cols(m.q[s] for s in m.S)
        self._unserved_up_cols = self._lp.cols(m.unserved_up[n] for n in m.B)
        self._unserved_down_cols = self._lp.cols(m.unserved_down[n] for n in m.B)
        self._balance_rows = self._lp.rows(m.balance[n] for n in m.B)
        self._flow_rows = self._lp.rows(m.flow_limit[int(k)] for k in self._rated)

    def _define_slots(self, m: pyo.ConcreteModel) -> None:
        """Offer slots, declared empty ([0, 0] MW); clear() writes a period's bounds and costs."""
        m.S = pyo.RangeSet(0, len(self._slot_bus) - 1)
        m.q = pyo.Var(m.S, bounds=(0.0, 0.0))

    def _define_unserved(self, m: pyo.ConcreteModel) -> None:
        m.unserved_up = pyo.Var(m.B, bounds=(0.0, None))
        m.unserved_down = pyo.Var(m.B, bounds=(0.0, None))

    def _define_balance(self, m: pyo.ConcreteModel, out_br, in_br) -> None:
        slots_at: list[list[int]] = [[] for _ in range(self.network.n_buses)]
        for s, n in enumerate(self._slot_bus):
            slots_at[int(n)].append(s)
        sign = self._slot_sign

        def balance_rule(m, n):
            offered = sum(float(sign[s]) * m.q[s] for s in slots_at[n])
            slack = m.unserved_up[n] - m.unserved_down[n]
            return offered + slack - net_outflow(m, out_br[n], in_br[n]) == 0.0  # need: later

        m.balance = pyo.Constraint(m.B, rule=balance_rule)

    def _define_objective(self, m: pyo.ConcreteModel) -> None:
        voll = self.voll_eur_per_mwh
        m.cost = pyo.Objective(
            expr=sum(TIE_BREAK_EUR_PER_MWH * m.q[s] for s in m.S)  # + price: per period
            + voll * sum(m.unserved_up[n] + m.unserved_down[n] for n in m.B),
            sense=pyo.minimize,
        )

    # ---- per period --------------------------------------------------------------------------

    def _slots_for(self, book: OfferBook, position: np.ndarray) -> np.ndarray:
        """Slot index of every offer (at bus ``position``); grows the capacity and rebuilds if a
        bus overflows."""
        key = 2 * position + (~book.is_up).astype(np.int64)
        counts = np.bincount(key, minlength=self.capacity.size).reshape(self.capacity.shape)
        if np.any(counts > self.capacity):
            new = self.capacity.copy()
            while np.any(counts > new):
                new = np.where(counts > new, 2 * new, new)
            logger.debug(
                "balancing model %s: %d bus-direction(s) overflow their slots, rebuilding with "
                "%d slots (was %d)",
                self.network.name,
                int(np.sum(counts > self.capacity)),
                int(new.sum()),
                int(self.capacity.sum()),
            )
            self.capacity = new
            self._build()
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        first = np.searchsorted(sorted_key, sorted_key, side="left")
        rank = np.empty(len(key), dtype=np.int64)
        rank[order] = np.arange(len(key)) - first
        return self._slot_start[key] + rank

    def _check(self, book: OfferBook, need: np.ndarray, base_flow: np.ndarray) -> np.ndarray:
        """Check the book's arrays and the period's needs and flows (pandas' per-column checks
        cost more than the LP's writes); returns the position of each offer's bus."""
        if need.shape != (self.network.n_buses,) or not np.all(np.isfinite(need)):
            raise ValueError(f"need_mw must be {self.network.n_buses} finite values")
        if base_flow.shape != (self.network.n_branches,) or not np.all(np.isfinite(base_flow)):
            raise ValueError(f"base_flow_mw must be {self.network.n_branches} finite values")
        if not np.all(book.is_up | (book.direction == DOWN)):
            raise ValueError("offer direction must be 'up' or 'down'")
        mw, price = book.mw, book.price
        if not (np.all(np.isfinite(mw)) and np.all(mw >= 0) and np.all(np.isfinite(price))):
            raise ValueError("offer mw must be finite and >= 0 and prices finite")
        try:
            position = self.network.bus_position(book.bus)
        except KeyError:
            buses = np.unique(book.bus).tolist()
            unknown = [b for b in buses if b not in self.network.bus_lookup]
            raise ValueError(f"offers at buses {unknown} not in {self.network.name!r}") from None
        ids = np.sort(book.offer_id)
        if np.any(ids[1:] == ids[:-1]):
            raise ValueError("offer_id must be unique")
        return position

    def flow_limits(self, base_flow: np.ndarray) -> np.ndarray:
        """Per branch, ``|base + deviation flow| <= limit``: ``max(rating, |base flow|)`` MW,
        inf for unrated branches."""
        limit = np.full(self.network.n_branches, np.inf)
        limit[self._rated] = np.maximum(self._rating[self._rated], np.abs(base_flow[self._rated]))
        return limit

    def _set_flow_limits(self, base_flow: np.ndarray) -> tuple[str, ...]:
        rating = self._rating[self._rated]
        base = base_flow[self._rated]
        limit = self.flow_limits(base_flow)[self._rated]
        self._lp.set_row_bounds(self._flow_rows, -limit - base, limit - base)
        # A schedule at a line's rating meets it to solver precision (1e-12 MW): not an overload.
        over = self._rated[np.abs(base) > rating + MW_TOL]
        if not len(over):
            return ()
        names = tuple(self.network.branches["element"].iloc[over].astype(str))
        logger.info("balancing: base flow exceeds rating on %s; limits relaxed", names)
        return names

    def clear(
        self,
        offers: pd.DataFrame,
        need_mw: np.ndarray,
        base_flow_mw: np.ndarray | None = None,
        offer_rows: tuple[Matrix, np.ndarray] | None = None,
    ) -> BalancingResult:
        """Clear ``offers`` against the per-bus ``need_mw`` (positive: more injection needed).

        ``base_flow_mw`` is the schedule's flow per branch (default: zero). Offers need columns
        offer_id, bus (transmission bus id), direction, mw, price_eur_per_mwh; TER offers
        (:func:`~market_sim.markets.offers.ter_offers`) can simply be concatenated with DER
        offers. ``offer_rows = (A, b)`` adds constraints ``A q <= b`` on the accepted MW of the
        offers (columns of ``A`` in the order of ``offers``; dense or scipy.sparse) for this
        period only: the reserve and the TSO-managed model's linearised distribution-network
        constraints.
        """
        return self.clear_book(OfferBook.of(offers), need_mw, base_flow_mw, offer_rows)

    def clear_book(
        self,
        book: OfferBook,
        need_mw: np.ndarray,
        base_flow_mw: np.ndarray | None = None,
        offer_rows: tuple[Matrix, np.ndarray] | None = None,
    ) -> BalancingResult:
        """:meth:`clear` of an offer table given with its columns (:class:`OfferBook`)."""
        need = np.asarray(need_mw, dtype=float)
        base_flow = (
            np.zeros(self.network.n_branches)
            if base_flow_mw is None
            else np.asarray(base_flow_mw, dtype=float)
        )
        position = self._check(book, need, base_flow)
        offers = book.table
        slot = self._slots_for(book, position)  # may rebuild, so before touching the model

        t0 = time.perf_counter()
        relaxed = self._write_period(book, slot, need, base_flow)
        matrix, upper = offer_rows if offer_rows is not None else (np.zeros((0, 0)), np.zeros(0))
        with self._lp.extra_rows(matrix, self._q_cols[slot], upper):
            msg = self._run_exclusive(book, slot)
        note = f"; limits relaxed on {', '.join(relaxed)}" if relaxed else ""
        if msg is not None:
            logger.warning("balancing market failed: %s", msg)
            result = self._failed(offers, msg + note, time.perf_counter() - t0, relaxed)
        else:
            result = self._solved(book, slot, "optimal" + note, relaxed, t0, len(upper))
        rows = (_as_sparse(matrix, (len(upper), len(offers))), np.asarray(upper, dtype=float))
        limit = self.flow_limits(base_flow)
        return replace(
            result,
            need_mw=need,
            base_flow_mw=base_flow,
            flow_limit_mw=limit,
            offer_rows=rows,
            voll_eur_per_mwh=self.voll_eur_per_mwh,
        )

    def _run_exclusive(self, book: OfferBook, slot: np.ndarray) -> str | None:
        """Solve, with a device's up and down offers mutually exclusive.

        Accepting both directions of a device moves it by their difference while paying for
        their sum, which the LP does whenever the two asks sum to less than zero (and may on a
        tie). The offers' optional ``device`` column says which offers belong together (-1 or
        missing: none). Where the LP accepts a device both ways, a MIP with one binary per
        such device (up or down) decides its direction, the other direction is withdrawn and
        the LP is solved again, so that the prices are the LP's duals at the dispatch it
        reports. Each round adds at least one device to those decided, so the loop ends.
        """
        offered, device, is_up = book.mw, book.device, book.is_up
        deciding = np.zeros(len(offered), dtype=bool)
        while True:  # the offers' bounds are written already (_write_period)
            msg = self._lp.run()
            if msg is not None or not np.any(device >= 0):
                return msg
            washing = washed_devices(device, is_up, self._lp.values()[self._q_cols[slot]])
            if not washing.any():
                return None
            deciding |= washing
            self._set_offered(slot, offered)
            goes_up = self._directions(slot, offered, device, is_up, deciding)
            if goes_up is None:
                return "not solved to optimality: the MIP of exclusive directions failed"
            self._set_offered(slot, np.where(deciding & (is_up != goes_up), 0.0, offered))

    def _directions(self, slot, offered, device, is_up, deciding) -> np.ndarray | None:
        """The MIP: whether each deciding offer's device goes up (per offer; None if the MIP
        fails). Binary ``z_d`` per device; ``q <= mw z_d`` up, ``q <= mw (1 - z_d)`` down.
        The binaries and their rows are removed again before returning."""
        highs, first_col, first_row = self._lp.highs, self._lp.highs.getNumCol(), None
        rows = np.flatnonzero(deciding)
        devices, which = np.unique(device[rows], return_inverse=True)
        k, n = len(devices), len(rows)
        z = np.arange(first_col, first_col + k, dtype=np.int32)
        highs.addCols(k, np.zeros(k), np.zeros(k), np.ones(k), 0, np.zeros(k, np.int32),
                      np.zeros(0, np.int32), np.zeros(0))  # fmt: skip
        try:
            highs.changeColsIntegrality(k, z, np.full(k, highspy.HighsVarType.kInteger))
            first_row = highs.getNumRow()
            up, mw = is_up[rows], offered[rows]
            index = np.column_stack([self._q_cols[slot[rows]], z[which]]).ravel()
            value = np.column_stack([np.ones(n), np.where(up, -mw, mw)]).ravel()
            starts = np.arange(0, 2 * n, 2, dtype=np.int32)
            lower = np.full(n, -highspy.kHighsInf)
            highs.addRows(n, lower, np.where(up, 0.0, mw), 2 * n, starts, index.astype(np.int32),
                          value)  # fmt: skip
            if self._lp.run() is not None:
                return None
            chosen = self._lp.values()[z] > 0.5
        finally:
            if first_row is not None:
                highs.deleteRows(n, np.arange(first_row, first_row + n, dtype=np.int32))
            highs.deleteCols(k, z)
        goes_up = np.zeros(len(offered), dtype=bool)
        goes_up[rows] = chosen[which]
        return goes_up

    def _set_offered(self, slot: np.ndarray, offered_mw: np.ndarray) -> None:
        """Column bounds of the period: each offer's slot up to its MW, unused slots at 0."""
        mw = np.zeros(len(self._slot_bus))
        mw[slot] = offered_mw
        self._lp.set_col_bounds(self._q_cols, np.zeros_like(mw), mw)

    def _write_period(
        self, book: OfferBook, slot: np.ndarray, need: np.ndarray, base_flow: np.ndarray
    ) -> tuple[str, ...]:
        """Write the period's offers into their slots, the needs and the flow limits (only
        what changed); returns the branches whose limits were relaxed."""
        self._set_offered(slot, book.mw)
        # Costs of unused slots are left as they are: their columns are fixed at 0.
        self._lp.set_col_costs(self._q_cols[slot], book.price + TIE_BREAK_EUR_PER_MWH)
        self._lp.set_row_bounds(self._balance_rows, need, need)
        return self._set_flow_limits(base_flow)

    def _solved(
        self,
        book: OfferBook,
        slot: np.ndarray,
        message: str,
        relaxed: tuple[str, ...],
        t0: float,
        extra_rows: int,
    ) -> BalancingResult:
        """The result of an optimal solve started at ``t0`` with ``extra_rows`` period rows."""
        x, duals = self._lp.values(), self._lp.duals()
        q = x[self._q_cols[slot]]
        taken = q > MW_TOL
        unserved_up = float(x[self._unserved_up_cols].sum())
        unserved_down = float(x[self._unserved_down_cols].sum())
        offer_price = book.price
        nodal = duals[self._balance_rows]
        accepted = new_frame(
            {
                "offer_id": book.offer_id[taken],
                "bus": book.bus[taken],
                "direction": pd.arrays.StringArray(book.direction[taken]),  # checked: text
                "mw": q[taken],
                "price_eur_per_mwh": offer_price[taken],
                "bus_price_eur_per_mwh": nodal[self._slot_bus[slot[taken]]],
            }
        )
        return BalancingResult(
            ok=True,
            message=message,
            accepted=accepted,
            price_eur_per_mwh=nodal,
            unserved_up_mw=unserved_up,
            unserved_down_mw=unserved_down,
            cost_eur=float(offer_price @ q + self.voll_eur_per_mwh * (unserved_up + unserved_down)),
            solve_time_s=time.perf_counter() - t0,
            n_variables=self.n_variables,
            n_constraints=self.n_constraints + extra_rows,
            offers=book.table,
            relaxed_branches=relaxed,
            # the period's rows come after the model's own (LoadedModel.extra_rows)
            row_duals=duals[self._lp.n_rows : self._lp.n_rows + extra_rows].copy(),
        )

    def _failed(
        self, offers: pd.DataFrame, message: str, elapsed: float, relaxed: tuple[str, ...]
    ) -> BalancingResult:
        return BalancingResult(
            ok=False,
            message=message,
            accepted=_empty_accepted(),
            price_eur_per_mwh=np.full(self.network.n_buses, np.nan),
            unserved_up_mw=float("nan"),
            unserved_down_mw=float("nan"),
            cost_eur=float("nan"),
            solve_time_s=elapsed,
            n_variables=self.n_variables,
            n_constraints=self.n_constraints,
            offers=offers,
            relaxed_branches=relaxed,
        )
