"""The transmission network as the market layer sees it: a DC model with generator costs.

The data are taken from pandapower's own OPF conversion (``_pd2ppc`` in OPF mode), not rebuilt
from the element tables, so that :class:`~market_sim.markets.schedule.EnergySchedule` clears the
same problem as ``pandapower.rundcopp``: same susceptances (incl. tap ratios), same phase-shift
injections, same ratings (``max_i_ka``/``max_loading_percent`` for lines, ``sn_mva``/
``max_loading_percent`` for transformers), same generator limits and polynomial costs.

Units and signs (project convention, see :mod:`market_sim.types`): power in MW, injection
positive; angles in rad; costs in EUR/h, EUR/MWh and EUR/MW^2h.
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: pandapower.networks cases that carry polynomial generator costs (checked with pandapower 3.5).
CASES_WITH_COSTS = (
    "case5",
    "case6ww",
    "case9",
    "case14",
    "case24_ieee_rts",
    "case30",
    "case_ieee30",
    "case33bw",
    "case39",
    "case57",
    "case89pegase",
    "case118",
    "case145",
    "case_illinois200",
    "case300",
    "case1354pegase",
    "case1888rte",
    "case2848rte",
    "case2869pegase",
    "case3120sp",
    "case6470rte",
    "case6495rte",
    "case6515rte",
    "case9241pegase",
)

#: Thermal ratings of SimBench EHV branches are multiplied by this (via max_loading_percent).
#: As published, ``1-EHV-mixed--0-sw`` is not DC-feasible: a DC power flow of its own reference
#: snapshot overloads 44 lines and 14 transformers, and no dispatch of its plants (even with all
#: minimum outputs at 0 or renewables curtailable) supplies its load within the ratings; the
#: smallest uniform factor that makes it feasible is 1.74 at its reference load and 1.91 at 110 %
#: (measured with the schedule; see benchmarks/README.md). 2.0 leaves headroom for load
#: variation while several branches still bind.
SIMBENCH_RATING_FACTOR = 2.0

#: Prefix of ``load_case`` names that are SimBench transmission grids, e.g.
#: ``"simbench:1-EHV-mixed--0-sw"``.
SIMBENCH_PREFIX = "simbench:"

GENERATOR_COLUMNS = (
    "element",  # pandapower element name, e.g. "gen 3", "ext_grid 0", "sgen 7"
    "bus",  # pandapower bus id
    "bus_pos",  # position in TransmissionNetwork.bus_ids
    "p_min_mw",
    "p_max_mw",
    "c0_eur_per_h",
    "c1_eur_per_mwh",
    "c2_eur_per_mw2h",
)

BRANCH_COLUMNS = (
    "element",  # e.g. "line 4", "trafo 1"
    "from_bus",  # pandapower bus ids
    "to_bus",
    "from_pos",  # positions in TransmissionNetwork.bus_ids
    "to_pos",
    "b_pu",  # DC susceptance 1/(x*tap) in p.u. on base_mva
    "shift_mw",  # constant flow offset of a phase shifter, MW (pypower's Pfinj * base_mva)
    "rating_mw",  # thermal limit on |flow| in MW; inf if unlimited
)


@dataclass(frozen=True)
class TransmissionNetwork:
    """Immutable DC view of a transmission network.

    A branch's flow from ``from_bus`` to ``to_bus`` in MW is
    ``base_mva * b_pu * (theta_from - theta_to) + shift_mw``. The nodal balance at bus n is
    ``sum(gen at n) - sum(flows out of n) + sum(flows into n) = load_n + shunt_mw_n``.

    ``bus_ids`` are pandapower bus indices; pypower auxiliary buses (e.g. trafo3w star points)
    have id -1. Buses merged by closed bus-bus switches share one position; ``bus_position``
    maps every such pandapower bus to it. ``generators`` rows are the OPF-controllable units
    (ext_grid, gen, controllable sgen/load/storage) with their injection limits; a controllable
    load appears with negative limits (its injection is minus its consumption).
    """

    name: str
    base_mva: float
    bus_ids: np.ndarray
    base_load_mw: np.ndarray
    shunt_mw: np.ndarray
    ref_pos: np.ndarray
    ref_angle_rad: np.ndarray
    generators: pd.DataFrame
    branches: pd.DataFrame
    bus_lookup: dict[int, int] = field(default_factory=dict, compare=False)

    @property
    def n_buses(self) -> int:
        return len(self.bus_ids)

    @property
    def n_branches(self) -> int:
        return len(self.branches)

    @property
    def n_generators(self) -> int:
        return len(self.generators)

    def bus_position(self, bus_ids: np.ndarray | pd.Series | list[int] | int) -> np.ndarray:
        """Positions in ``bus_ids`` of pandapower bus ids; raises KeyError for unknown buses."""
        ids = np.atleast_1d(np.asarray(bus_ids, dtype=np.int64))
        table = self._position_by_id
        known = (ids >= 0) & (ids < len(table))
        pos = np.where(known, table[np.where(known, ids, 0)], -1)
        if np.any(pos < 0):
            unknown = int(ids[np.argmax(pos < 0)])
            raise KeyError(f"bus {unknown} is not a bus of network {self.name!r}")
        return pos

    @functools.cached_property
    def _position_by_id(self) -> np.ndarray:
        """:attr:`bus_lookup` as an array indexed by bus id (-1: no such bus), so that an offer
        book's buses are looked up at once (a dict lookup per offer cost more than the rest of
        placing the offers). Never empty: an id outside it is not a bus either."""
        ids = np.fromiter(self.bus_lookup, np.int64, len(self.bus_lookup))
        table = np.full(int(ids.max()) + 1 if len(ids) else 1, -1, dtype=np.int64)
        table[ids] = np.fromiter(self.bus_lookup.values(), np.int64, len(ids))
        return table


def load_case(name: str, costs: str = "case") -> TransmissionNetwork:
    """Network of the pandapower.networks case ``name`` (e.g. "case39", "case118"), or of a
    SimBench transmission grid ``"simbench:<code>"`` (e.g. "simbench:1-EHV-mixed--0-sw", see
    :func:`load_simbench_transmission`).

    ``costs``: "case" keeps the case's own polynomial costs; "fuel_table" prices every unit by
    its fuel (:data:`~market_sim.markets.fuel_costs.CASE_FUELS`), because the IEEE cases' toy
    costs (case39: 0.3 EUR/MWh apart) make no merit order. SimBench grids carry no costs and
    are always priced by the fuel table. Raises ValueError naming the case and the allowed
    ones if it is unknown or has no costs, because a market cannot be cleared without them.
    """
    import pandapower.networks as pn

    if name.startswith(SIMBENCH_PREFIX):
        return load_simbench_transmission(name.removeprefix(SIMBENCH_PREFIX), name=name)
    allowed = ", ".join(CASES_WITH_COSTS) + f", {SIMBENCH_PREFIX}<EHV code>"
    factory = getattr(pn, name, None) if name.startswith("case") else None
    if factory is None or not callable(factory):
        raise ValueError(f"unknown transmission case {name!r}; allowed: {allowed}")
    net = factory()
    if costs == "fuel_table":
        price_by_fuel(net, name)
    if len(net.poly_cost) == 0:
        raise ValueError(f"case {name!r} has no generator cost data; allowed: {allowed}")
    return from_pandapower(net, name=name)


def price_by_fuel(net, case: str, cost_spread: float = 0.2) -> None:
    """Replace the poly_cost of ``net`` (pandapower case ``case``) by linear fuel costs.

    Every gen and ext_grid must have a fuel in the case's assignment (ValueError names the
    missing ones); within a fuel, :func:`~market_sim.markets.fuel_costs.unit_costs` spreads
    the units by size so that none tie.
    """
    import pandapower as pp

    from market_sim.markets.fuel_costs import case_fuels, unit_costs

    fuels = case_fuels(case)
    units = [(t, i) for t in ("ext_grid", "gen") for i in net[t].index]
    missing = [f"{t} {i}" for t, i in units if f"{t} {i}" not in fuels]
    if missing:
        raise ValueError(f"case {case!r}: no fuel for {missing}")
    names = pd.Index([f"{t} {i}" for t, i in units])
    types = pd.Series([fuels[n] for n in names], index=names)
    p_max = pd.Series([float(net[t].at[i, "max_p_mw"]) for t, i in units], index=names)
    cost = unit_costs(types, p_max, cost_spread)
    net.poly_cost = net.poly_cost.iloc[0:0]
    for (table, index), c1 in zip(units, cost.to_numpy(), strict=True):
        pp.create_poly_cost(net, index, table, cp1_eur_per_mw=float(c1))


def load_simbench_transmission(
    code: str,
    name: str = "",
    cost_spread: float = 0.2,
    rating_factor: float = SIMBENCH_RATING_FACTOR,
) -> TransmissionNetwork:
    """A SimBench EHV grid (e.g. ``1-EHV-mixed--0-sw``: 3,085 buses, 338 gen, 7 ext_grid) as a
    transmission network, with linear costs from :mod:`market_sim.markets.fuel_costs`.

    See :func:`simbench_opf_net` for how the grid is prepared; loading takes a few seconds
    (SimBench builds the net from CSV), so the prepared net is cached per code.
    """
    net = simbench_opf_net(code, cost_spread, rating_factor)
    return from_pandapower(net, name=name or f"{SIMBENCH_PREFIX}{code}")


def simbench_opf_net(
    code: str, cost_spread: float = 0.2, rating_factor: float = SIMBENCH_RATING_FACTOR
):
    """The pandapower net of SimBench grid ``code``, prepared for a DC OPF (a deep copy).

    * Costs: every power plant (``gen`` and ``ext_grid``) gets ``c1`` from its ``type`` via the
      fuel table; renewables (``sgen``) stay non-controllable, i.e. fixed injections that
      lower the net load, as in pandapower's OPF.
    * One reference bus: SimBench models nuclear plants as 7 ext_grids. In pandapower's DC
      OPF every ext_grid bus is a reference bus with its angle fixed at ``va_degree``, which
      ties 7 buses in 4 control areas to one angle (an artificial constraint on the flows).
      All but the first in-service ext_grid become ordinary controllable gens with the same
      limits and cost (names ``gen <new index>``; the original kept in ``gen.name``).
    * Transformers: SimBench leaves ``tap_changer_type`` empty, so pandapower 3 ignores tap
      positions; it is set to "Ratio" where a tap step is given. Phase shifts
      (``shift_degree``) are kept: pandapower's DC model turns them into constant flow offsets
      (``shift_mw`` of the branch), and the DC model does not diverge as a flat-start AC power
      flow can. (``1-EHV-mixed--0-sw`` has neither off-neutral taps nor shifts.)
    * DC lines (none in ``1-EHV-mixed--0-sw``): replaced by their scheduled transfer as fixed
      injections (a load at the sending end, an sgen of ``p - losses`` at the receiving end),
      because the clearing has no HVDC control variable; logged at WARNING if any.
    * Ratings: line and transformer ``max_loading_percent`` times ``rating_factor`` (see
      :data:`SIMBENCH_RATING_FACTOR` for why).
    """
    return copy.deepcopy(_simbench_opf_net(code, float(cost_spread), float(rating_factor)))


@functools.lru_cache(maxsize=2)
def _simbench_opf_net(code: str, cost_spread: float, rating_factor: float):
    import pandapower as pp
    import simbench

    from market_sim.markets.fuel_costs import unit_costs

    try:
        net = simbench.get_simbench_net(code)
    except Exception as err:  # noqa: BLE001 - reraised with the code named
        raise ValueError(f"cannot load SimBench grid {code!r}: {err}") from None
    if len(net.gen) + len(net.ext_grid) == 0:
        raise ValueError(f"SimBench grid {code!r} has no power plants to dispatch")

    for table in ("line", "trafo", "trafo3w"):
        if len(net[table]):
            pct = net[table].get("max_loading_percent", pd.Series(100.0, net[table].index))
            net[table]["max_loading_percent"] = pct.fillna(100.0) * rating_factor
    has_tap = net.trafo["tap_pos"].notna() & net.trafo["tap_step_percent"].fillna(0).ne(0)
    net.trafo.loc[has_tap & net.trafo["tap_changer_type"].isna(), "tap_changer_type"] = "Ratio"

    for i, row in net.dcline[net.dcline["in_service"]].iterrows():
        received = row.p_mw * (1 - row.loss_percent / 100) - row.loss_mw
        pp.create_load(net, row.from_bus, p_mw=row.p_mw, name=f"dcline {i} send")
        pp.create_sgen(net, row.to_bus, p_mw=received, name=f"dcline {i} receive")
        net.dcline.at[i, "in_service"] = False
        logger.warning("%s: DC line %s fixed at %.1f MW (no HVDC control)", code, i, row.p_mw)

    ext = net.ext_grid[net.ext_grid["in_service"]]
    for i, row in ext.iloc[1:].iterrows():
        pp.create_gen(
            net,
            row.bus,
            p_mw=float(row.get("p_disp_mw", 0.0) or 0.0),
            vm_pu=row.vm_pu,
            min_p_mw=row.min_p_mw,
            max_p_mw=row.max_p_mw,
            controllable=True,
            slack=False,
            name=f"{row['name']} (ext_grid {i})",
            type=row.type,
        )
        net.ext_grid.at[i, "in_service"] = False
    net.ext_grid = net.ext_grid[net.ext_grid["in_service"]]
    net.gen["controllable"] = True
    net.ext_grid["controllable"] = True
    for table in ("sgen", "load", "storage"):
        net[table]["controllable"] = False  # SimBench leaves NaN, which pandapower cannot use
    for table in ("gen", "ext_grid"):
        df = net[table]
        bad = df["max_p_mw"].isna() | df["min_p_mw"].isna()
        if bad.any():
            raise ValueError(f"{code}: {table} {list(df.index[bad])} lack min/max_p_mw")
        cost = unit_costs(df["type"], df["max_p_mw"], cost_spread)
        for idx, c1 in cost.items():
            pp.create_poly_cost(net, idx, table, cp1_eur_per_mw=float(c1))
    logger.info(
        "SimBench %s: %d buses, %d plants with fuel costs, %d fixed renewables",
        code,
        len(net.bus),
        len(net.gen) + len(net.ext_grid),
        len(net.sgen),
    )
    return net


def from_pandapower(net, name: str = "") -> TransmissionNetwork:
    """Convert a pandapower net (with ``poly_cost``) into a :class:`TransmissionNetwork`.

    Works on a deep copy, because pandapower's conversion adds auxiliary elements and options.
    Piecewise-linear costs are not supported (ValueError) since the schedule is a QP.
    """
    from pandapower.auxiliary import _add_auxiliary_elements, _init_rundcopp_options
    from pandapower.pd2ppc import _pd2ppc

    name = name or str(getattr(net, "name", "") or "net")
    if len(net.poly_cost) == 0:
        raise ValueError(f"network {name!r} has no generator cost data (net.poly_cost is empty)")
    if len(net.pwl_cost) > 0:
        raise ValueError(f"network {name!r} has piecewise-linear costs, which are not supported")

    net = copy.deepcopy(net)
    _init_rundcopp_options(
        net,
        check_connectivity=True,
        switch_rx_ratio=0.5,
        delta=1e-10,
        trafo3w_losses="hv",
    )
    _add_auxiliary_elements(net)
    _, ppci = _pd2ppc(net)

    bus_ids, bus_lookup = _bus_ids(net, len(ppci["bus"]))
    generators = _generators(net, ppci, bus_ids)
    branches = _branches(net, ppci, bus_ids)
    return TransmissionNetwork(
        name=name,
        base_mva=float(ppci["baseMVA"]),
        bus_ids=bus_ids,
        base_load_mw=ppci["bus"][:, _idx_bus("PD")].astype(float).copy(),
        shunt_mw=ppci["bus"][:, _idx_bus("GS")].astype(float).copy(),
        ref_pos=np.flatnonzero(ppci["bus"][:, _idx_bus("BUS_TYPE")] == _idx_bus("REF")),
        ref_angle_rad=np.deg2rad(
            ppci["bus"][ppci["bus"][:, _idx_bus("BUS_TYPE")] == _idx_bus("REF"), _idx_bus("VA")]
        ),
        generators=generators,
        branches=branches,
        bus_lookup=bus_lookup,
    )


def _idx_bus(name: str):
    from pandapower.pypower import idx_bus

    return getattr(idx_bus, name)


def _bus_ids(net, n_ppci: int) -> tuple[np.ndarray, dict[int, int]]:
    """Pandapower id of each internal bus (lowest id if merged) and the id -> position map."""
    lookup = net._pd2ppc_lookups["bus"]
    bus_ids = np.full(n_ppci, -1, dtype=np.int64)
    bus_lookup: dict[int, int] = {}
    for b in net.bus.index.values:
        if b >= len(lookup):
            continue
        pos = int(lookup[b])
        if 0 <= pos < n_ppci:
            bus_lookup[int(b)] = pos
            if bus_ids[pos] < 0 or b < bus_ids[pos]:
                bus_ids[pos] = b
    return bus_ids, bus_lookup


def _generators(net, ppci, bus_ids: np.ndarray) -> pd.DataFrame:
    """One row per internal (in-service) generator, named after its pandapower element."""
    from pandapower.pypower.idx_cost import COST, MODEL, NCOST, POLYNOMIAL
    from pandapower.pypower.idx_gen import GEN_BUS, PMAX, PMIN

    n_ppc = sum(t - f for f, t in net._gen_order.values())
    names = [""] * int(n_ppc)
    for element, (f, _) in net._gen_order.items():
        table = element.split("_controllable")[0]
        index = net[table].index.values[net._is_elements[element]]
        for k, i in enumerate(index):
            names[int(f) + k] = f"{table} {i}"
    gen_is = np.asarray(ppci["internal"]["gen_is"], dtype=bool)
    names = [n for n, keep in zip(names, gen_is, strict=True) if keep]

    gen, gencost = ppci["gen"], ppci["gencost"]
    if len(gencost) != len(gen):
        raise ValueError(f"{len(gencost)} cost rows for {len(gen)} generators")
    if np.any(gencost[:, MODEL] != POLYNOMIAL):
        raise ValueError("only polynomial generator costs are supported")
    coef = np.zeros((len(gen), 3))  # c0, c1, c2
    for row, cost in enumerate(gencost):
        n = int(cost[NCOST])
        if n > 3:
            raise ValueError(f"generator {names[row]} has a cost polynomial of degree {n - 1}")
        coef[row, :n] = cost[COST : COST + n][::-1]
    pos = gen[:, GEN_BUS].astype(np.int64)
    return pd.DataFrame(
        {
            "element": pd.Series(names, dtype="string"),
            "bus": bus_ids[pos],
            "bus_pos": pos,
            "p_min_mw": gen[:, PMIN].astype(float),
            "p_max_mw": gen[:, PMAX].astype(float),
            "c0_eur_per_h": coef[:, 0],
            "c1_eur_per_mwh": coef[:, 1],
            "c2_eur_per_mw2h": coef[:, 2],
        }
    )


def _branches(net, ppci, bus_ids: np.ndarray) -> pd.DataFrame:
    """One row per internal (in-service) branch with pypower's DC susceptance and rating."""
    from pandapower.pypower.idx_brch import F_BUS, RATE_A, SHIFT, T_BUS
    from pandapower.pypower.makeBdc import calc_b_from_branch

    lookups = net._pd2ppc_lookups["branch"]
    n_ppc = max((t for _, t in lookups.values()), default=0)
    names = [f"branch {k}" for k in range(int(n_ppc))]
    for table, (f, t) in lookups.items():
        n = int(t - f)
        if table in net and len(net[table]) == n:
            for k, i in enumerate(net[table].index.values):
                names[int(f) + k] = f"{table} {i}"
        elif table == "trafo3w" and 3 * len(net[table]) == n:
            for side_k, side in enumerate(("hv", "mv", "lv")):
                for k, i in enumerate(net[table].index.values):
                    names[int(f) + side_k * len(net[table]) + k] = f"trafo3w {i} {side}"
        else:
            for k in range(n):
                names[int(f) + k] = f"{table} #{k}"
    branch_is = np.asarray(ppci["internal"]["branch_is"], dtype=bool)
    names = [n for n, keep in zip(names, branch_is, strict=True) if keep]

    branch = ppci["branch"]
    base_mva = float(ppci["baseMVA"])
    b = np.real(calc_b_from_branch(branch, len(branch))).astype(float)
    shift_mw = -base_mva * b * np.deg2rad(np.real(branch[:, SHIFT]).astype(float))
    rate = np.real(branch[:, RATE_A]).astype(float)
    rating = np.where((rate > 0) & (rate < 1e10), rate, np.inf)
    f_pos = np.real(branch[:, F_BUS]).astype(np.int64)
    t_pos = np.real(branch[:, T_BUS]).astype(np.int64)
    return pd.DataFrame(
        {
            "element": pd.Series(names, dtype="string"),
            "from_bus": bus_ids[f_pos],
            "to_bus": bus_ids[t_pos],
            "from_pos": f_pos,
            "to_pos": t_pos,
            "b_pu": b,
            "shift_mw": shift_mw,
            "rating_mw": rating,
        }
    )


def network_from_arrays(
    *,
    n_buses: int,
    branches: list[tuple[int, int, float, float]],
    generators: list[tuple[str, int, float, float, float, float]] | None = None,
    base_load_mw: np.ndarray | None = None,
    base_mva: float = 100.0,
    name: str = "hand-built",
) -> TransmissionNetwork:
    """A small network built by hand (tests, examples); bus ids are 0..n_buses-1, ref is bus 0.

    ``branches``: (from_bus, to_bus, x_pu, rating_mw); ``generators``:
    (element, bus, p_min_mw, p_max_mw, c1_eur_per_mwh, c2_eur_per_mw2h).
    """
    gens = generators or []
    br = pd.DataFrame(
        {
            "element": pd.Series([f"line {k}" for k in range(len(branches))], dtype="string"),
            "from_bus": np.array([b[0] for b in branches], dtype=np.int64),
            "to_bus": np.array([b[1] for b in branches], dtype=np.int64),
            "b_pu": np.array([1.0 / b[2] for b in branches], dtype=float),
            "shift_mw": np.zeros(len(branches)),
            "rating_mw": np.array([b[3] for b in branches], dtype=float),
        }
    )
    br.insert(3, "from_pos", br["from_bus"].to_numpy())
    br.insert(4, "to_pos", br["to_bus"].to_numpy())
    gen = pd.DataFrame(
        {
            "element": pd.Series([g[0] for g in gens], dtype="string"),
            "bus": np.array([g[1] for g in gens], dtype=np.int64),
            "bus_pos": np.array([g[1] for g in gens], dtype=np.int64),
            "p_min_mw": np.array([g[2] for g in gens], dtype=float),
            "p_max_mw": np.array([g[3] for g in gens], dtype=float),
            "c0_eur_per_h": np.zeros(len(gens)),
            "c1_eur_per_mwh": np.array([g[4] for g in gens], dtype=float),
            "c2_eur_per_mw2h": np.array([g[5] for g in gens], dtype=float),
        }
    )
    return TransmissionNetwork(
        name=name,
        base_mva=base_mva,
        bus_ids=np.arange(n_buses, dtype=np.int64),
        base_load_mw=np.zeros(n_buses) if base_load_mw is None else np.asarray(base_load_mw),
        shunt_mw=np.zeros(n_buses),
        ref_pos=np.array([0], dtype=np.int64),
        ref_angle_rad=np.zeros(1),
        generators=gen,
        branches=br,
        bus_lookup={b: b for b in range(n_buses)},
    )
