"""The offer book of the balancing market: what an offer is and where offers come from.

An offer table has the columns :data:`OFFER_COLUMNS`: ``offer_id``, ``bus`` (transmission bus),
``direction`` (up = more injection), ``mw`` (>= 0) and ``price_eur_per_mwh``. Transmission
energy resources (the scheduled generators) offer their balancing range with negative ids
(:func:`ter_offers`, which also carry their ``element``); DER bids become offers at their DSO's
interface bus with their bid id (:func:`bid_offers`), so that TER and DER offers can simply be
concatenated into one book.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from market_sim.columns import numbers, reindexed, text
from market_sim.markets.devices import device_of
from market_sim.types import DOWN, UP, typed_frame

if TYPE_CHECKING:
    from market_sim.markets.schedule import ScheduleResult
    from market_sim.markets.transmission import TransmissionNetwork

logger = logging.getLogger(__name__)

OFFER_COLUMNS = ("offer_id", "bus", "direction", "mw", "price_eur_per_mwh")

#: The columns and types of the TER offers (:func:`ter_offers`).
TER_OFFER_COLUMNS = {
    "offer_id": "int64",
    "element": "string",
    "bus": "int64",
    "direction": "string",
    "mw": "float64",
    "price_eur_per_mwh": "float64",
}

#: Quantities below this (MW) are solver noise: not offered, and reported as not accepted.
MW_TOL = 1e-7

#: Segments of a generator's balancing range per direction when its cost is quadratic.
TER_SEGMENTS = 4


def empty_offers() -> pd.DataFrame:
    """An offer table with no rows."""
    return pd.DataFrame(
        {
            "offer_id": pd.Series(dtype="int64"),
            "bus": pd.Series(dtype="int64"),
            "direction": pd.Series(dtype=object),
            "mw": pd.Series(dtype=float),
            "price_eur_per_mwh": pd.Series(dtype=float),
        }
    )


def bid_offers(bids: pd.DataFrame, interface_bus: dict[str, int]) -> pd.DataFrame:
    """Each (validated) bid as an offer at the interface bus of its DSO; offer_id = bid_id.

    ``bids`` holds the quantity to offer in ``mw`` (the validated MW where bids were validated);
    bids of no MW (at most 1e-9) are left out. ``device``: the device of the bid, whose up and
    down offers the clearing never accepts together
    (:func:`~market_sim.markets.devices.device_of`). The columns are selected as arrays before
    the table is built: the TSO makes this book at every clearing.
    """
    return pd.DataFrame(bid_offer_columns(bids, interface_bus))


def bid_offer_columns(bids: pd.DataFrame, interface_bus: dict[str, int]) -> dict[str, np.ndarray]:
    """The columns of :func:`bid_offers` as arrays: a clearing that reads them into its book
    (:func:`~.tso_markets.offer_book`) builds no table in between."""
    mw = numbers(bids, "mw")
    keep = mw > 1e-9
    bid_id = numbers(bids, "bid_id", np.int64)[keep]
    dso = text(bids, "dso")[keep]
    return {
        "offer_id": bid_id,
        "bus": _interface_buses(dso, interface_bus),
        "direction": text(bids, "direction")[keep],
        "mw": mw[keep],
        "price_eur_per_mwh": numbers(bids, "price_eur_per_mwh")[keep],
        "device": device_of(bid_id),
    }


def _interface_buses(dso: np.ndarray, interface_bus: dict[str, int]) -> np.ndarray:
    """The interface bus of each bid's DSO; KeyError for a DSO without one. One comparison
    of the column per DSO: a run has a few DSOs (two in the shipped configurations), and a
    lookup per bid cost half as much again at two."""
    bus = np.empty(len(dso), dtype=np.int64)
    found = np.zeros(len(dso), dtype=bool)
    for name, at in interface_bus.items():
        mine = dso == name
        bus[mine] = at
        found |= mine
    if not found.all():
        raise KeyError(dso[np.argmin(found)])
    return bus


def ter_offers(
    network: TransmissionNetwork,
    schedule: ScheduleResult,
    ramp_mw: np.ndarray | float,
    segments: int = TER_SEGMENTS,
) -> pd.DataFrame:
    """Balancing offers of the transmission energy resources (the scheduled generators).

    Up: ``min(p_max - p_sched, ramp)`` MW, down: ``min(p_sched - p_min, ramp)`` MW, each split
    into ``segments`` equal steps priced at the marginal cost ``c1 + 2 c2 p`` at the step's
    midpoint (minus that for down: a generator moved down saves fuel and so pays the TSO). The
    piecewise-linear offer is the quadratic cost curve itself: for every whole step, price times
    MW equals the exact cost change ``C(p1) - C(p0)``. Generators with linear cost offer one
    step. ``ramp_mw`` is per generator (aligned with ``network.generators``) or one value for
    all. offer_id of generator i, step j: ``-(2 (segments i + j) + 1)`` up and ``... + 2)``
    down: negative, so never clashing with DER bid ids, and stable across periods. Offers with
    zero MW are left out. Columns: offer_id, element, bus, direction, mw, price_eur_per_mwh.
    """
    return TerSteps.of(network, segments).offers(schedule, ramp_mw)


@dataclass(frozen=True)
class TerSteps:
    """The steps of the generators' TER offers (:func:`ter_offers`), which are fixed for a
    run: per offer, in the order of the table (offer_id descending), its generator, step and
    direction, with the generators' limits and each offer's cost coefficients as arrays. A
    period computes only the steps' MW and prices from its schedule."""

    gen_index: pd.Index  # the generators' element names (a schedule's gen_mw index)
    gen: np.ndarray  # generator position of each offer
    midpoint: np.ndarray  # j + 0.5: where in its direction's range step j's price is taken
    steps: np.ndarray  # the generator's number of steps k
    is_up: np.ndarray
    room_at: np.ndarray  # each offer's generator in the ranges of both directions, up first
    offer_id: np.ndarray
    element: pd.arrays.StringArray
    bus: np.ndarray
    direction: pd.arrays.StringArray
    c1: np.ndarray  # per offer: its generator's
    c2: np.ndarray
    p_min: np.ndarray  # per generator
    p_max: np.ndarray

    @classmethod
    def of(cls, network: TransmissionNetwork, segments: int = TER_SEGMENTS) -> TerSteps:
        gen = network.generators
        c1, c2 = gen["c1_eur_per_mwh"].to_numpy(), gen["c2_eur_per_mw2h"].to_numpy()
        steps = np.where(c2 != 0.0, segments, 1)
        i = np.repeat(np.arange(len(gen)), steps)
        j = np.concatenate([np.arange(k) for k in steps])
        ids = np.concatenate([-(2 * (segments * i + j) + 1), -(2 * (segments * i + j) + 2)])
        order = np.argsort(-ids, kind="stable")
        g, is_up = np.concatenate([i, i])[order], np.repeat([True, False], len(i))[order]
        return cls(
            gen_index=pd.Index(gen["element"]),
            gen=g,
            midpoint=np.concatenate([j, j])[order] + 0.5,
            steps=steps[g],
            is_up=is_up,
            room_at=np.where(is_up, g, g + len(gen)),
            offer_id=ids[order],
            element=pd.array(gen["element"].to_numpy()[g], dtype="string"),
            bus=gen["bus"].to_numpy()[g],
            direction=pd.array(np.where(is_up, UP, DOWN).astype(object), dtype="string"),
            c1=c1[g],
            c2=c2[g],
            p_min=gen["p_min_mw"].to_numpy(),
            p_max=gen["p_max_mw"].to_numpy(),
        )

    def offers(self, schedule: ScheduleResult, ramp_mw: np.ndarray | float) -> pd.DataFrame:
        """The TER offer table of ``schedule`` (:func:`ter_offers`)."""
        return typed_frame(self.columns(schedule, ramp_mw), TER_OFFER_COLUMNS)

    def columns(self, schedule: ScheduleResult, ramp_mw: np.ndarray | float) -> dict[str, Any]:
        """The columns of :meth:`offers`, of its types (a clearing reads them into its book,
        :func:`~.tso_markets.offer_book`, without the table in between)."""
        if not schedule.ok:
            logger.warning("no TER offers: the schedule failed (%s)", schedule.message)
            none = np.zeros(len(self.offer_id))
            return self._offered(none > 0, none, none)
        p = reindexed(schedule.gen_mw, self.gen_index)
        ramp = np.broadcast_to(np.asarray(ramp_mw, dtype=float), p.shape)
        up = np.clip(np.minimum(self.p_max - p, ramp), 0.0, None)
        down = np.clip(np.minimum(p - self.p_min, ramp), 0.0, None)
        is_up, k, at = self.is_up, self.steps, p[self.gen]
        # the expressions of both directions as they were written for each (bit for bit): a
        # step's range in its direction is picked from both directions' ranges at once
        room = np.concatenate([up, down])[self.room_at]
        mw = room / k
        shift = self.midpoint * room / k
        marginal = self.c1 + 2.0 * self.c2 * np.where(is_up, at + shift, at - shift)
        price = np.where(is_up, marginal, -marginal)
        return self._offered(mw > MW_TOL, mw, price)

    def _offered(self, keep: np.ndarray, mw: np.ndarray, price: np.ndarray) -> dict[str, Any]:
        """The columns of the steps ``keep`` at ``mw`` and ``price``, of the types of
        :data:`TER_OFFER_COLUMNS` (numpy arrays; the text taken from this table's pandas
        strings, whose values need no conversion again)."""
        values = (self.offer_id, self.element, self.bus, self.direction, mw, price)
        return {
            c: v[keep] if t == "string" else np.asarray(v[keep], dtype=t)
            for (c, t), v in zip(TER_OFFER_COLUMNS.items(), values, strict=True)
        }
