"""Prosumers: one per bus of a distribution network that has a load, PV or a battery.

Prosumer behaviour is computed for the whole population at once: :class:`ProsumerPopulation`
holds every device of every prosumer as arrays, and a :class:`Prosumer` agent is a view of its
rows. Bidding and delivery are numpy operations over those arrays, never a loop over agents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import mesa
import numpy as np
import pandas as pd

from market_sim.columns import numbers, text
from market_sim.config import ProsumerConfig
from market_sim.types import BID_COLUMNS, DOWN, UP, Injections, typed_frame

LOAD, PV, STORAGE = "load", "pv", "storage"
_TABLE = {LOAD: "load", PV: "sgen", STORAGE: "storage"}
_NO_ROWS = np.zeros(0, dtype=np.intp)
#: A bid's direction as pandas text, taken by position: 0 up, 1 down.
_DIRECTIONS = pd.array([UP, DOWN], dtype="string")


class Prosumer(mesa.Agent):
    """A prosumer: the devices at one bus of one DSO network.

    It decides nothing alone here: its offers follow the population's cost model, and its
    energy state (state of charge, shifted load) is part of the run state (``DeviceEnergy``).
    """

    def __init__(self, model: mesa.Model, dso: str, bus: int, aggregator: str) -> None:
        super().__init__(model)
        self.dso = dso
        self.bus = bus
        self.aggregator = aggregator  # "" if the prosumer offers no flexibility
        self.devices: np.ndarray = np.zeros(0, dtype=int)  # rows of the population arrays


@dataclass
class DeviceArrays:
    """Every device of every prosumer; row r is device r, bid ids are 2r (up) and 2r+1 (down)."""

    dso: np.ndarray  # str, DSO name
    kind: np.ndarray  # str, load / pv / storage
    element_index: np.ndarray  # int, index in the pandapower table of the kind
    position: np.ndarray  # int, row of that table (Injections arrays are positional)
    bus: np.ndarray  # int, bus in the DSO network
    prosumer: np.ndarray  # int, prosumer agent unique_id
    aggregator: np.ndarray  # str, "" when not flexible
    price_up: np.ndarray  # EUR/MWh, NaN where the device cannot move up
    price_down: np.ndarray  # EUR/MWh, NaN where the device cannot move down
    e_max_mwh: np.ndarray  # battery energy capacity (0 for other devices)
    p_max_mw: np.ndarray  # battery power limit (0 for other devices)
    shift_limit_mwh: np.ndarray  # load: bound on |shifted energy| (0 for other devices)

    # what the stages select devices by, fixed for the run: derived once, not every period
    @cached_property
    def load(self) -> np.ndarray:
        return self.kind == LOAD

    @cached_property
    def pv(self) -> np.ndarray:
        return self.kind == PV

    @cached_property
    def battery(self) -> np.ndarray:
        return self.kind == STORAGE

    @cached_property
    def flexible(self) -> np.ndarray:
        """The devices whose prosumer offers flexibility (through an aggregator)."""
        return self.aggregator != ""

    @cached_property
    def table(self) -> np.ndarray:
        """Each device's pandapower table (load, sgen, storage)."""
        return np.array([_TABLE[k] for k in self.kind], dtype=object)

    @cached_property
    def text(self) -> dict[str, pd.api.extensions.ExtensionArray]:
        """The bid book's text columns of every device as pandas text, made once: a period's
        book takes its rows (instead of pandas checking every string of them, every period)."""
        columns = {"aggregator": self.aggregator, "dso": self.dso, "element": self.table}
        return {c: pd.array(values, dtype="string") for c, values in columns.items()}

    @cached_property
    def places(self) -> dict[tuple[str, str], np.ndarray]:
        """The rows of each (DSO, kind) that has devices: where a DSO's injections are read
        and written."""
        places = {}
        for dso in dict.fromkeys(self.dso.tolist()):
            for kind in _TABLE:
                rows = np.flatnonzero((self.dso == dso) & (self.kind == kind))
                if len(rows):
                    places[dso, kind] = rows
        return places


@dataclass(frozen=True)
class DeviceEnergy:
    """The energy state of every device at a period boundary: part of the run state.

    Aligned with the rows of :class:`DeviceArrays`; each period's delivery makes a new one.
    Loads and batteries share one mechanism, an *energy debt* their baseline must pay back by
    a deadline: ``debt_mwh[r, j]`` is what device r owes within the next ``j + 1`` periods,
    ``overdue_mwh[r]`` what it could not repay by its deadline (its power limit or a load's
    zero consumption stood in the way), owed at once. A load owes consumption (MWh from the
    grid: deferred > 0, advanced < 0); a battery owes state of charge (MWh in the cell: below
    its target > 0, above it < 0), so that its debt is always ``target - soc``.
    """

    soc_mwh: np.ndarray  # battery state of charge (0 for other devices)
    debt_mwh: np.ndarray  # (devices, periods of the longest window): owed by deadline
    overdue_mwh: np.ndarray  # owed past its deadline

    @property
    def owed_mwh(self) -> np.ndarray:
        """Everything each device still owes (load: shifted consumption outstanding)."""
        return self.overdue_mwh + self.debt_mwh.sum(axis=1)

    def due_mwh(self) -> np.ndarray:
        """What each device's baseline repays this period if nothing stops it: every debt in
        equal parts over the periods left before its deadline (no spike), plus the overdue.
        The same array every time (not to be written): a period asks four times."""
        return self._due

    @cached_property
    def _due(self) -> np.ndarray:
        """:meth:`due_mwh`, computed once per state: a state is never changed, a period's
        delivery makes a new one."""
        periods_left = np.arange(1, self.debt_mwh.shape[1] + 1)
        return self.overdue_mwh + (self.debt_mwh / periods_left).sum(axis=1)


def _owners(dev: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Owner (prosumer row) of every device, and the prosumers' DSO and bus."""
    is_load = (dev.kind == LOAD).to_numpy()
    owner = np.full(len(dev), -1, dtype=np.int64)
    owner[is_load] = np.arange(is_load.sum())
    first = dev[is_load].assign(owner=owner[is_load]).drop_duplicates(["dso", "bus"])
    others = dev[~is_load].merge(first[["dso", "bus", "owner"]], on=["dso", "bus"], how="left")
    lone = others.owner.isna().to_numpy()
    lone_bus = others.loc[lone, "dso"].astype(str) + "/" + others.loc[lone, "bus"].astype(str)
    new_owner, _ = pd.factorize(lone_bus)
    others.loc[lone, "owner"] = is_load.sum() + new_owner
    owner[~is_load] = others.owner.to_numpy(np.int64)
    owners = dev.assign(owner=owner).drop_duplicates("owner").sort_values("owner")
    return owner, owners[["dso", "bus"]].reset_index(drop=True)


def _device_table(networks: dict) -> pd.DataFrame:
    """Every load, PV unit and battery of every network, one row each, sorted by bus."""
    parts = []
    for dso, dn in networks.items():
        net = dn.net
        rows = [
            pd.DataFrame(
                {
                    "kind": LOAD,
                    "element_index": net.load.index,
                    "bus": net.load.bus,
                    "position": np.arange(len(net.load)),
                }
            ),
            pd.DataFrame(
                {
                    "kind": PV,
                    "element_index": net.sgen.index[dn.pv_mask],
                    "bus": net.sgen.bus[dn.pv_mask],
                    "position": np.flatnonzero(dn.pv_mask),
                }
            ),
            pd.DataFrame(
                {
                    "kind": STORAGE,
                    "element_index": net.storage.index,
                    "bus": net.storage.bus,
                    "e_max_mwh": dn.storage_e_max_mwh,
                    "p_max_mw": dn.storage_p_max_mw,
                    "position": np.arange(len(net.storage)),
                }
            ),
        ]
        table = pd.concat(rows, ignore_index=True).assign(dso=dso)
        parts.append(table.sort_values(["bus", "kind", "element_index"], kind="stable"))
    return pd.concat(parts, ignore_index=True).fillna({"e_max_mwh": 0.0, "p_max_mw": 0.0})


def _choose_aggregators(
    rng: np.random.Generator,
    owners: pd.DataFrame,
    aggregators_of: dict[str, list[str]],
    flexible_share: float,
) -> np.ndarray:
    """Each prosumer's aggregator: one of those covering its DSO, "" if it is not flexible."""
    flexible = rng.random(len(owners)) < flexible_share
    return np.array(
        [
            rng.choice(aggregators_of[d]) if f else ""
            for d, f in zip(owners.dso, flexible, strict=True)
        ],
        dtype=object,
    )


class ProsumerPopulation:
    """All prosumers of a scenario, with vectorised bidding, baselines and delivery."""

    def __init__(self, config: ProsumerConfig, period_h: float) -> None:
        self.config = config
        self.period_h = period_h
        # one-way charge and discharge efficiency: their product is the round-trip efficiency
        self.efficiency = float(np.sqrt(config.storage_round_trip_efficiency))
        self.load_window = _periods(config.load_shift_hours, period_h)
        self.storage_window = _periods(config.storage_recovery_hours, period_h)
        self.agents: list[Prosumer] = []
        self.devices: DeviceArrays | None = None

    # -- building -----------------------------------------------------------------------------
    def build(
        self, model: mesa.Model, networks: dict, aggregators_of: dict[str, list[str]]
    ) -> None:
        """Create the prosumers and draw their flexibility and prices once (seeded).

        Every load is a prosumer (in SimBench's LV grids, a household); PV and batteries belong
        to the first load at their bus, or form a prosumer of their own where no load is. The
        draws happen in a fixed order (flexible or not, aggregator, prices), so a seed gives
        the same population every time.
        """
        rng = model.rng
        dev = _device_table(networks)
        owner_row, owners = _owners(dev)
        agg = _choose_aggregators(rng, owners, aggregators_of, self.config.flexible_share)
        self.agents = [
            Prosumer(model, d, int(b), a)
            for d, b, a in zip(owners.dso, owners.bus, agg, strict=True)
        ]
        kind = dev.kind.to_numpy()
        price_up, price_down = self._draw_prices(rng, kind)
        self.devices = DeviceArrays(
            dso=dev.dso.to_numpy(object),
            kind=kind,
            element_index=dev.element_index.to_numpy(int),
            position=dev.position.to_numpy(int),
            bus=dev.bus.to_numpy(int),
            prosumer=np.array([a.unique_id for a in self.agents], dtype=np.int64)[owner_row],
            aggregator=agg[owner_row],
            price_up=np.round(price_up, 2),
            price_down=np.round(price_down, 2),
            e_max_mwh=dev.e_max_mwh.to_numpy(float),
            p_max_mw=dev.p_max_mw.to_numpy(float),
            shift_limit_mwh=self._shift_limits(networks, dev),
        )
        order = np.argsort(owner_row, kind="stable")
        bounds = np.searchsorted(owner_row[order], np.arange(len(self.agents) + 1))
        for r, agent in enumerate(self.agents):
            agent.devices = order[bounds[r] : bounds[r + 1]]

    def _draw_prices(
        self, rng: np.random.Generator, kind: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each device's asked price up and down (NaN where it cannot move that way)."""
        prices = self.config.prices
        truncate = not self.config.allow_negative_prices

        def draw(spec, mask):
            values = np.full(len(kind), np.nan)
            values[mask] = _normal(rng, spec.mean, spec.sd, int(mask.sum()), truncate)
            return values

        load, storage, pv = kind == LOAD, kind == STORAGE, kind == PV
        price_up = np.where(load, draw(prices.load_up, load), np.nan)
        price_up = np.where(storage, draw(prices.storage_up, storage), price_up)
        price_down = np.where(load, draw(prices.load_down, load), np.nan)
        price_down = np.where(storage, draw(prices.storage_down, storage), price_down)
        if self.config.pv_curtailable:
            price_down = np.where(pv, draw(prices.pv_down, pv), price_down)
        return price_up, price_down

    def _shift_limits(self, networks: dict, dev: pd.DataFrame) -> np.ndarray:
        """Energy a load may shift: its flexible share at peak for ``load_shift_hours``."""
        limits = np.zeros(len(dev))
        for dso, dn in networks.items():
            rows = np.flatnonzero((dev.dso == dso).to_numpy() & (dev.kind == LOAD).to_numpy())
            peak = dn.profiles["load_p"].max(axis=0)[dev.position.to_numpy()[rows]]
            limits[rows] = self.config.load_flex_fraction * np.maximum(peak, 0.0)
        return limits * self.config.load_shift_hours

    @property
    def window(self) -> np.ndarray:
        """Each device's repayment window, periods: a debt it takes on is repaid within it."""
        return np.where(self.devices.battery, self.storage_window, self.load_window)

    def target_mwh(self) -> np.ndarray:
        """Each battery's target state of charge, MWh (0 for other devices)."""
        return self.devices.e_max_mwh * self.config.soc_target

    def initial_energy(self) -> DeviceEnergy:
        """Batteries at their initial state of charge, no load shifted yet; a battery that
        starts away from its target owes the difference within its window."""
        d = self.devices
        n = len(d.kind)
        soc = d.e_max_mwh * self.config.storage_soc_init
        debt = np.zeros((n, max(self.load_window, self.storage_window)))
        debt[np.arange(n), self.window - 1] = self.target_mwh() - soc
        return DeviceEnergy(soc, debt, np.zeros(n))

    # -- baselines --------------------------------------------------------------------------
    def recovery(self, energy: DeviceEnergy, baselines: dict[str, Injections]) -> np.ndarray:
        """What each device's baseline repays this period, MWh: a load's consumption added
        (withheld if negative), a battery's state of charge gained (lost if negative).

        ``baselines``: the DSOs' forecasts without any recovery. The due repayment is bounded by
        physics only: a load's consumption stays >= 0, a battery within its power limit and
        capacity; what is left stays owed (``overdue_mwh``) and is repaid first.
        """
        d = self.devices
        h, eta = self.period_h, self.efficiency
        load, battery = d.load, d.battery
        consumption = np.maximum(self._baseline_mw(baselines), 0.0)
        soc = energy.soc_mwh
        lowest = np.where(load, -consumption * h, 0.0)
        lowest = np.where(battery, -np.minimum(d.p_max_mw * h / eta, soc), lowest)
        highest = np.where(load, np.inf, 0.0)
        highest = np.where(battery, np.minimum(d.p_max_mw * h * eta, d.e_max_mwh - soc), highest)
        return np.clip(energy.due_mwh(), lowest, highest)

    def with_recovery(
        self, baselines: dict[str, Injections], energy: DeviceEnergy
    ) -> dict[str, Injections]:
        """The DSOs' forecasts with every device's repayment of the period added: a load's
        deferred consumption comes back, a battery recharges (discharges) towards its target.
        They are the baselines every validation, clearing and delivery starts from, so the
        repaid energy really flows through the networks."""
        d = self.devices
        recovered = self.recovery(energy, baselines)
        grid_mw = np.where(d.battery, self._battery_grid_mw(recovered), recovered / self.period_h)
        out = {}
        for dso, inj in baselines.items():
            moved = inj.copy()
            for kind in (LOAD, STORAGE):
                rows = d.places.get((dso, kind), _NO_ROWS)
                moved.p_mw[_TABLE[kind]][d.position[rows]] += grid_mw[rows]
            out[dso] = moved
        return out

    def _baseline_mw(self, baselines: dict[str, Injections]) -> np.ndarray:
        """Each device's forecast set-point, MW, in its pandapower table's sign."""
        d = self.devices
        p = np.zeros(len(d.kind))
        for dso, inj in baselines.items():
            for kind, table in _TABLE.items():
                rows = d.places.get((dso, kind), _NO_ROWS)
                p[rows] = inj.p_mw[table][d.position[rows]]
        return p

    def _battery_grid_mw(self, soc_gain_mwh: np.ndarray) -> np.ndarray:
        """Grid power (consumption > 0) that moves a battery's charge by ``soc_gain_mwh``."""
        eta, h = self.efficiency, self.period_h
        return np.where(soc_gain_mwh > 0, soc_gain_mwh / (eta * h), soc_gain_mwh * eta / h)

    def _battery_soc_gain(self, grid_mw: np.ndarray) -> np.ndarray:
        """Charge gained by a battery that draws ``grid_mw`` (consumption > 0) for a period."""
        eta, h = self.efficiency, self.period_h
        return np.where(grid_mw > 0, grid_mw * eta * h, grid_mw * h / eta)

    # -- bidding --------------------------------------------------------------------------------
    def bids(self, baselines: dict[str, Injections], energy: DeviceEnergy) -> pd.DataFrame:
        """The bid book of every flexible device for the period, from the DSOs' forecasts
        (without recovery: the period's repayment is computed here, as for the baselines).

        load: up to ``load_flex_fraction`` of its consumption with the period's repayment, up
        (defer) and down (advance), as far as what it still owes after the repayment stays
        within its shift limit; PV: its forecast output can be curtailed (down); battery:
        discharge (up) and charge (down) from its recovery set-point within its power limit
        and what its state of charge allows over the period. Quantities are rounded down to
        1 W so that a delivered bid never overshoots a limit.
        """
        d = self.devices
        h = self.period_h
        recovered = self.recovery(energy, baselines)
        baseline = self._baseline_mw(baselines)
        up, down = np.zeros(len(d.kind)), np.zeros(len(d.kind))
        load = d.load
        flex = self.config.load_flex_fraction * np.maximum(baseline + recovered / h, 0.0)
        room = d.shift_limit_mwh / h
        owed = (energy.owed_mwh - recovered) / h
        up[load] = np.minimum(flex, np.maximum(room - owed, 0))[load]
        down[load] = np.minimum(flex, np.maximum(room + owed, 0))[load]
        pv = d.pv
        down[pv] = np.maximum(baseline[pv], 0.0)
        up_b, down_b = self._battery_room(energy, recovered)
        battery = d.battery
        up[battery], down[battery] = up_b[battery], down_b[battery]
        return self._book(up, down)

    def _battery_room(
        self, energy: DeviceEnergy, recovered: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """How far each battery can move up (discharge) and down (charge) from its recovery
        set-point: its net power stays within its limit, its charge within [0, capacity]."""
        d = self.devices
        eta, h = self.efficiency, self.period_h
        setpoint = self._battery_grid_mw(recovered)
        emptiest = np.maximum(-d.p_max_mw, -energy.soc_mwh * eta / h)
        fullest = np.minimum(d.p_max_mw, (d.e_max_mwh - energy.soc_mwh) / (eta * h))
        return np.maximum(setpoint - emptiest, 0.0), np.maximum(fullest - setpoint, 0.0)

    def _book(self, up: np.ndarray, down: np.ndarray) -> pd.DataFrame:
        """The bid book of the devices' up and down quantities (MW)."""
        d = self.devices
        flexible = d.flexible
        up = np.where(flexible & ~np.isnan(d.price_up), up, 0.0)
        down = np.where(flexible & ~np.isnan(d.price_down), down, 0.0)
        rows = np.concatenate([np.flatnonzero(up > 1e-6), np.flatnonzero(down > 1e-6)])
        is_up = np.arange(len(rows)) < int((up > 1e-6).sum())
        bid_id = 2 * rows + np.where(is_up, 0, 1)
        order = np.argsort(bid_id, kind="stable")  # the book is sorted by bid id
        rows, is_up = rows[order], is_up[order]
        columns = {
            "bid_id": bid_id[order],
            "prosumer": d.prosumer[rows],
            "aggregator": d.text["aggregator"].take(rows),
            "dso": d.text["dso"].take(rows),
            "element": d.text["element"].take(rows),
            "element_index": d.element_index[rows],
            "bus": d.bus[rows],
            "direction": _DIRECTIONS.take(np.where(is_up, 0, 1)),
            "mw": np.floor(np.where(is_up, up[rows], down[rows]) * 1e6) / 1e6,
            "price_eur_per_mwh": np.where(is_up, d.price_up[rows], d.price_down[rows]),
        }
        # each column built with its dtype (text taken from the devices' pandas text, which
        # typed_frame takes as it is): one frame, no sort and cast of a frame
        return typed_frame(columns, BID_COLUMNS)

    # -- delivery -------------------------------------------------------------------------------
    def delivery(
        self, dispatch: pd.DataFrame, reliability: float, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """What each dispatched DER delivers: all of it with probability ``reliability``, else
        nothing (a device that fails to respond). The columns bid_id, buyer, mw and
        delivered_mw as arrays (the settlement reads them; no table is built).

        One draw per device and period, whatever was dispatched, so that every model of a
        scenario faces the same failures (a draw per dispatch row would follow the row order,
        which differs between models, and the number of rows, which shifts later draws).
        The columns are read as the table's own arrays (:mod:`market_sim.columns`), without
        the Series that indexing the table builds for each."""
        bid_id = numbers(dispatch, "bid_id", np.int64)
        mw = numbers(dispatch, "mw")
        delivers: np.ndarray | bool = True
        if reliability < 1:
            responds = rng.random(len(self.devices.kind)) < reliability
            delivers = responds[bid_id // 2]  # up and down alike
        return {
            "bid_id": bid_id,
            "buyer": text(dispatch, "buyer"),
            "mw": mw,
            "delivered_mw": np.where(delivers, mw, 0.0),
        }

    def deliver(
        self,
        energy: DeviceEnergy,
        dispatch: Mapping[str, np.ndarray],
        baselines: dict[str, Injections],
    ) -> DeviceEnergy:
        """The energy state after the period: the baseline's repayment made, what the DER
        delivered added as new debt due within each device's window.

        ``dispatch``: the columns bid_id and mw delivered (a table or arrays); ``baselines``:
        the forecasts without recovery (as given to :meth:`bids`). A battery's charge moves by
        its net power (recovery set-point minus up plus down: ``eta`` per MWh charged,
        ``1 / eta`` per MWh discharged); a load deferring consumption (up) owes it, advancing
        it (down) is owed it.
        """
        d = self.devices
        recovered = self.recovery(energy, baselines)
        bid_id = np.asarray(dispatch["bid_id"], dtype=np.int64)
        mw = np.asarray(dispatch["mw"], dtype=float)
        up_mw = np.zeros(len(d.kind))
        np.add.at(up_mw, bid_id // 2, np.where(bid_id % 2 == 0, mw, -mw))
        battery = d.battery
        gain = self._battery_soc_gain(self._battery_grid_mw(recovered) - up_mw)
        soc = np.where(battery, energy.soc_mwh + gain, energy.soc_mwh)
        np.clip(soc, 0.0, d.e_max_mwh, out=soc)  # float round-off only
        new_debt = np.where(battery, recovered - gain, 0.0)
        new_debt = np.where(d.load, up_mw * self.period_h, new_debt)
        return DeviceEnergy(soc, *_roll(energy, recovered, new_debt, self.window))

    def device_state(self, energy: DeviceEnergy) -> pd.DataFrame:
        """Energy state of every flexible battery and load at the end of the period.

        ``energy_mwh`` is a battery's state of charge (bounds 0 and its capacity) or a load's
        shifted energy still owed (bounds -limit and +limit); ``target_mwh`` the state a
        battery returns to (a load's is 0); ``overdue_mwh`` what is owed past its deadline.
        """
        return pd.DataFrame(self.device_columns(energy))

    def device_columns(self, energy: DeviceEnergy) -> dict[str, np.ndarray]:
        """The columns of :meth:`device_state` as arrays: what the record stage keeps."""
        d = self.devices
        keep = d.flexible & (d.battery | d.load)
        battery = d.battery[keep]
        return {
            "dso": d.dso[keep],
            "element": d.table[keep],
            "element_index": d.element_index[keep],
            "energy_mwh": np.where(battery, energy.soc_mwh[keep], energy.owed_mwh[keep]),
            "min_mwh": np.where(battery, 0.0, -d.shift_limit_mwh[keep]),
            "max_mwh": np.where(battery, d.e_max_mwh[keep], d.shift_limit_mwh[keep]),
            "target_mwh": self.target_mwh()[keep],
            "overdue_mwh": energy.overdue_mwh[keep],
        }


def _periods(hours: float, period_h: float) -> int:
    """A window in whole periods: ``hours`` rounded down, at least one period."""
    return max(1, int(np.floor(hours / period_h + 1e-9)))


def _normal(rng: np.random.Generator, mean: float, sd: float, n: int, truncate: bool):
    """``n`` draws of N(mean, sd), truncated at 0 if ``truncate``: negative draws are drawn
    again (rejection sampling, so no mass piles up at 0); with ``mean >= 0`` (checked by the
    config) each round keeps at least half of them."""
    values = rng.normal(mean, sd, n)
    while truncate and (values < 0).any():
        negative = values < 0
        values[negative] = rng.normal(mean, sd, int(negative.sum()))
    return values


def _roll(
    energy: DeviceEnergy, recovered: np.ndarray, new_debt: np.ndarray, window: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The debts one period later: this period's equal shares repaid, what physics held back
    left overdue, every deadline one period nearer, and ``new_debt`` due within ``window``."""
    periods_left = np.arange(1, energy.debt_mwh.shape[1] + 1)
    remaining = energy.debt_mwh * ((periods_left - 1) / periods_left)  # column 0 is repaid
    overdue = energy.due_mwh() - recovered
    debt = np.zeros_like(remaining)
    debt[:, :-1] = remaining[:, 1:]
    debt[np.arange(len(window)), window - 1] += new_debt
    return debt, overdue
