"""Prosumers: one per bus of a distribution network that has a load, PV or a battery.

Prosumer behaviour is computed for the whole population at once: :class:`ProsumerPopulation`
holds every device of every prosumer as arrays, and a :class:`Prosumer` agent is a view of its
rows. Bidding and delivery are numpy operations over those arrays, never a loop over agents.
"""

from __future__ import annotations

from dataclasses import dataclass

import mesa
import numpy as np
import pandas as pd

from market_sim.config import ProsumerConfig
from market_sim.types import BID_COLUMNS, DOWN, UP, Injections

LOAD, PV, STORAGE = "load", "pv", "storage"
_TABLE = {LOAD: "load", PV: "sgen", STORAGE: "storage"}


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


@dataclass(frozen=True)
class DeviceEnergy:
    """The energy state of every device at a period boundary: part of the run state.

    Aligned with the rows of :class:`DeviceArrays`; each period's delivery makes a new one.
    """

    soc_mwh: np.ndarray  # battery state of charge (0 for other devices)
    shift_mwh: np.ndarray  # load: consumption deferred so far (>0) or advanced (<0)


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
    """All prosumers of a scenario, with vectorised bidding and delivery."""

    def __init__(self, config: ProsumerConfig, period_h: float) -> None:
        self.config = config
        self.period_h = period_h
        # one-way charge and discharge efficiency: their product is the round-trip efficiency
        self.efficiency = float(np.sqrt(config.storage_round_trip_efficiency))
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

        def draw(spec, mask):
            values = np.full(len(kind), np.nan)
            values[mask] = rng.normal(spec.mean, spec.sd, int(mask.sum()))
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

    def initial_energy(self) -> DeviceEnergy:
        """Batteries at their initial state of charge, no load shifted yet."""
        d = self.devices
        return DeviceEnergy(d.e_max_mwh * self.config.storage_soc_init, np.zeros(len(d.kind)))

    # -- bidding --------------------------------------------------------------------------------
    def bids(self, baselines: dict[str, Injections], energy: DeviceEnergy) -> pd.DataFrame:
        """The bid book of every flexible device for the period, from the DSOs' forecasts.

        load: up to ``load_flex_fraction`` of its forecast consumption, up (defer) and down
        (advance or recover), as far as its shifted energy stays within its limit; PV: its
        forecast output can be curtailed (down); battery: discharge (up) and charge (down)
        within its power limit and what its state of charge allows over the period. Quantities
        are rounded down to 1 W so that a delivered bid never overshoots a limit.
        """
        d = self.devices
        up = np.zeros(len(d.kind))
        down = np.zeros(len(d.kind))
        for dso, inj in baselines.items():
            here = d.dso == dso
            load = here & (d.kind == LOAD)
            flex = self.config.load_flex_fraction * np.maximum(
                inj.p_mw["load"][d.position[load]], 0.0
            )
            room = d.shift_limit_mwh[load] / self.period_h
            shifted = energy.shift_mwh[load] / self.period_h
            up[load] = np.minimum(flex, np.maximum(room - shifted, 0))
            down[load] = np.minimum(flex, np.maximum(room + shifted, 0))
            pv = here & (d.kind == PV)
            down[pv] = np.maximum(inj.p_mw["sgen"][d.position[pv]], 0.0)
        battery = d.kind == STORAGE
        eta, h = self.efficiency, self.period_h
        soc = energy.soc_mwh[battery]
        up[battery] = np.minimum(d.p_max_mw[battery], soc * eta / h)
        down[battery] = np.minimum(d.p_max_mw[battery], (d.e_max_mwh[battery] - soc) / (eta * h))
        flexible = d.aggregator != ""
        up = np.where(flexible & ~np.isnan(d.price_up), up, 0.0)
        down = np.where(flexible & ~np.isnan(d.price_down), down, 0.0)
        rows = np.concatenate([np.flatnonzero(up > 1e-6), np.flatnonzero(down > 1e-6)])
        is_up = np.arange(len(rows)) < int((up > 1e-6).sum())
        book = pd.DataFrame(
            {
                "bid_id": 2 * rows + np.where(is_up, 0, 1),
                "prosumer": d.prosumer[rows],
                "aggregator": d.aggregator[rows],
                "dso": d.dso[rows],
                "element": [_TABLE[k] for k in d.kind[rows]],
                "element_index": d.element_index[rows],
                "bus": d.bus[rows],
                "direction": np.where(is_up, UP, DOWN),
                "mw": np.floor(np.where(is_up, up[rows], down[rows]) * 1e6) / 1e6,
                "price_eur_per_mwh": np.where(is_up, d.price_up[rows], d.price_down[rows]),
            }
        )
        return book.sort_values("bid_id", kind="stable").astype(BID_COLUMNS).reset_index(drop=True)

    # -- delivery -------------------------------------------------------------------------------
    def delivery(
        self, dispatch: pd.DataFrame, reliability: float, rng: np.random.Generator
    ) -> pd.DataFrame:
        """What each dispatched DER delivers: all of it with probability ``reliability``, else
        nothing (a device that fails to respond). Columns bid_id, buyer, mw, delivered_mw."""
        delivers = rng.random(len(dispatch)) < reliability if reliability < 1 else True
        mw = dispatch.mw.to_numpy(float)
        return pd.DataFrame(
            {
                "bid_id": dispatch.bid_id.to_numpy(np.int64),
                "buyer": dispatch.buyer.to_numpy(object),
                "mw": mw,
                "delivered_mw": np.where(delivers, mw, 0.0),
            }
        )

    def deliver(self, energy: DeviceEnergy, dispatch: pd.DataFrame) -> DeviceEnergy:
        """Batteries' state of charge and loads' shifted energy moved by what they delivered.

        ``dispatch``: bid_id, mw delivered. A battery discharging ``mw`` (up) loses
        ``mw / eta`` per hour, charging (down) gains ``mw * eta``; a load deferring consumption
        (up) adds to its shifted energy, advancing it (down) takes from it.
        """
        d = self.devices
        bid = dispatch.bid_id.to_numpy(np.int64)
        rows, is_up = bid // 2, bid % 2 == 0
        mw = dispatch.mw.to_numpy(float)
        battery = d.kind[rows] == STORAGE
        eta, h = self.efficiency, self.period_h
        delta = np.where(is_up, -mw / eta, mw * eta) * h
        soc, shift = energy.soc_mwh.copy(), energy.shift_mwh.copy()
        np.add.at(soc, rows[battery], delta[battery])
        np.clip(soc, 0.0, d.e_max_mwh, out=soc)  # float round-off only
        load = d.kind[rows] == LOAD
        np.add.at(shift, rows[load], np.where(is_up, mw, -mw)[load] * h)
        return DeviceEnergy(soc, shift)

    def device_state(self, energy: DeviceEnergy) -> pd.DataFrame:
        """Energy state of every flexible battery and load at the end of the period.

        ``energy_mwh`` is a battery's state of charge (bounds 0 and its capacity) or a load's
        shifted energy (bounds -limit and +limit).
        """
        d = self.devices
        keep = (d.aggregator != "") & ((d.kind == STORAGE) | (d.kind == LOAD))
        battery = d.kind[keep] == STORAGE
        return pd.DataFrame(
            {
                "dso": d.dso[keep],
                "element": [_TABLE[k] for k in d.kind[keep]],
                "element_index": d.element_index[keep],
                "energy_mwh": np.where(battery, energy.soc_mwh[keep], energy.shift_mwh[keep]),
                "min_mwh": np.where(battery, 0.0, -d.shift_limit_mwh[keep]),
                "max_mwh": np.where(battery, d.e_max_mwh[keep], d.shift_limit_mwh[keep]),
            }
        )
