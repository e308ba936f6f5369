"""Loading SimBench distribution networks and their time series.

A :class:`DistributionNetwork` bundles a pandapower net with absolute profiles of every load and
static generator, so that the baseline set-points of any 15-minute step are a row lookup.

Two things here exist because of SimBench itself:

* SimBench leaves ``trafo.tap_changer_type`` empty. pandapower 3 then silently ignores
  ``tap_pos``, so any tap setting would have no effect. We set it to ``"Ratio"`` wherever a tap
  position is given.
* ``simbench.get_absolute_values`` and ``simbench.get_simbench_net`` are slow (seconds). The
  unscaled profiles and the raw net are cached on disk under
  ``${MARKET_SIM_CACHE:-~/.cache/market_sim}``, each entry verified by its checksums on
  loading; scaling is applied after loading, so one cache entry serves every scenario
  (:mod:`.disk_cache`; the profiles, compact and scaled lazily, in :mod:`.profile_cache`).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd
import simbench

from market_sim.grid.disk_cache import atomic_write, cache_dir, verified, write_manifest
from market_sim.grid.profile_cache import raw_profiles
from market_sim.grid.profiles import N_PROFILE_STEPS, PROFILE_KEYS, ProfileArray
from market_sim.types import ELEMENT_TABLES, Injections

log = logging.getLogger(__name__)

#: SimBench profiles cover the leap year 2016 in 15-minute steps (N_PROFILE_STEPS of them).
PROFILE_YEAR = 2016
PROFILE_STEP_MINUTES = 15
_PROFILE_START = pd.Timestamp(f"{PROFILE_YEAR}-01-01 00:00")


def is_pv(sgen_type: pd.Series) -> np.ndarray:
    """True for PV-like static generators.

    SimBench's ``lv_RES`` aggregates of LV feeders are rooftop PV, so RES counts as PV.
    """
    t = sgen_type.astype("string").fillna("").str.upper()
    return (t.str.contains("PV") | t.str.contains("RES")).to_numpy(dtype=bool)


@dataclass
class DistributionNetwork:
    """One distribution network with its profiles, loaded once per run.

    ``profiles`` are absolute (MW / Mvar, scaled) arrays of shape ``[35136, n_elements]``
    aligned with ``net.load`` / ``net.sgen`` positional order, as lazily scaled
    :class:`ProfileArray` views of the compact cache (read rows: ``profiles[k][step]``).
    ``solver_cache`` is private state of the solvers (mostly :mod:`market_sim.grid.lightsim_model`:
    the lightsim2grid models per tap setting), kept here so that it lives exactly as long as
    the net.
    """

    code: str
    net: Any  # pandapowerNet
    profiles: dict[str, ProfileArray]
    pv_mask: np.ndarray
    interface_bus: int
    storage_e_max_mwh: np.ndarray
    storage_p_max_mw: np.ndarray
    solver_cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Tap positions as loaded: the baseline's taps. ``net.trafo.tap_pos`` holds whatever the
    #: last power flow wrote (an OLTC validation's taps), and reading the default from there
    #: made a period's forecast depend on which model or period ran before it.
    initial_taps: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        trafo = self.net.trafo
        pos = trafo["tap_pos"].to_numpy(dtype=float, na_value=np.nan)
        neutral = trafo["tap_neutral"].to_numpy(dtype=float, na_value=np.nan)
        self.initial_taps = np.where(np.isnan(pos), np.nan_to_num(neutral), pos)

    @property
    def n_steps(self) -> int:
        return int(self.profiles["load_p"].shape[0])

    def baseline(self, step: int) -> Injections:
        """Set-points of every device at ``step`` if nobody is dispatched.

        sgen reactive power is zero (unity power factor, SimBench has no sgen Q profiles);
        storage is idle because batteries only move when a market dispatches them.
        """
        if not 0 <= step < self.n_steps:
            raise ValueError(f"profile step {step} outside [0, {self.n_steps})")
        net = self.net
        n_sgen, n_sto = len(net.sgen), len(net.storage)
        return Injections(
            p_mw={
                "load": self.profiles["load_p"][step].copy(),
                "sgen": self.profiles["sgen_p"][step].copy(),
                "storage": np.zeros(n_sto),
            },
            q_mvar={
                "load": self.profiles["load_q"][step].copy(),
                "sgen": np.zeros(n_sgen),
                "storage": np.zeros(n_sto),
            },
            trafo_tap_pos=self.default_taps(),
        )

    def default_taps(self) -> np.ndarray:
        """Tap positions as loaded, as floats (a missing position means neutral)."""
        return self.initial_taps.copy()


def element_positions(
    dn: DistributionNetwork, tables: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Position in ``dn.net[tables[i]]`` of the element labelled ``labels[i]`` (-1: none, or
    not a load, sgen or storage)."""
    out = np.full(len(tables), -1, dtype=np.int64)
    for table in ELEMENT_TABLES:
        sel = tables == table
        if sel.any():
            out[sel] = table_positions(dn, table, labels[sel])
    return out


def kept_for_layout(
    dn: DistributionNetwork,
    name: str,
    tables: tuple[str, ...],
    keys: tuple[Any, ...],
    compute: Callable[[list[pd.Index]], Any],
) -> Any:
    """``compute(indices)`` of a table layout (``keys``: arrays or lists, compared by value),
    kept with the network under ``name`` for the last layout seen and the indices of the net's
    ``tables`` it was found in (compared by identity: a net whose tables were replaced is
    looked up afresh). A DSO reports and bids the same elements in the same order in most
    periods, where comparing the columns costs less than finding them in the net again."""
    indices = [dn.net[table].index for table in tables]
    kept = dn.solver_cache.get(name)
    if (
        kept is not None
        and all(a is b for a, b in zip(kept[0], indices, strict=True))
        and all(np.array_equal(a, b) for a, b in zip(kept[1], keys, strict=True))
    ):
        return kept[2]
    value = compute(indices)
    dn.solver_cache[name] = (indices, tuple(np.array(key, copy=True) for key in keys), value)
    return value


def table_positions(dn: DistributionNetwork, table: str, labels: np.ndarray) -> np.ndarray:
    """Positions in ``dn.net[table]`` of ``labels`` (-1: no such element).

    pandas' ``get_indexer``, looked up in a dict per table that is built once per index
    object (a validation locates the same bids at every tap candidate and in every method;
    ``get_indexer`` costs a quarter of a millisecond a call). Labels compare as Python
    values, as in pandas (3 and 3.0 are the same element).
    """
    lookup = _label_positions(dn, table)
    return np.array([lookup.get(label, -1) for label in labels.tolist()], dtype=np.int64)


def _label_positions(dn: DistributionNetwork, table: str) -> dict[object, int]:
    """Label -> position of ``dn.net[table]``, rebuilt whenever the table's index is replaced."""
    index = dn.net[table].index
    kept = dn.solver_cache.setdefault("label_positions", {}).get(table)
    if kept is None or kept[0] is not index:
        kept = (index, {label: pos for pos, label in enumerate(index.tolist())})
        dn.solver_cache["label_positions"][table] = kept
    return kept[1]


@lru_cache(maxsize=64)
def step_of(timestamp: pd.Timestamp | str) -> int:
    """SimBench profile step of a timestamp.

    Dates of other years are mapped onto the same calendar day and time of 2016 (a leap year,
    so every date exists), which lets a scenario run in any year on the SimBench profiles.
    Kept for the last few timestamps asked: every period asks for its run's start twice, and
    pandas' timestamp arithmetic was 0.7 % of a tso_managed period in a profile of a run.
    """
    ts = pd.Timestamp(timestamp)
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    if ts.year != PROFILE_YEAR:
        ts = ts.replace(year=PROFILE_YEAR)
    step = int((ts - _PROFILE_START) // pd.Timedelta(minutes=PROFILE_STEP_MINUTES))
    if not 0 <= step < N_PROFILE_STEPS:
        raise ValueError(f"{timestamp} maps to profile step {step}, outside the SimBench year")
    return step


def profile_step(start: pd.Timestamp | str, period: int, period_minutes: int) -> int:
    """Profile step of market period ``period`` (0-based) of a run starting at ``start``.

    A period longer than 15 minutes uses its first quarter hour. Steps past the end of the
    year wrap around, so long runs never fail on the calendar.
    """
    offset = (period * period_minutes) // PROFILE_STEP_MINUTES
    return (step_of(start) + offset) % N_PROFILE_STEPS


@cache
def simbench_codes() -> frozenset[str]:
    return frozenset(simbench.collect_all_simbench_codes())


def check_code(code: str) -> None:
    """ValueError naming ``code`` and what is allowed unless it is a SimBench network code."""
    codes = simbench_codes()
    if code not in codes:
        raise ValueError(
            f"'{code}' is not a SimBench network code; allowed: one of the {len(codes)} codes "
            "of simbench.collect_all_simbench_codes(), e.g. 1-MV-rural--2-sw, "
            "1-MV-semiurb--2-sw, 1-MVLV-urban-all-2-sw"
        )


def fix_tap_changers(net: Any) -> None:
    """Make pandapower honour SimBench tap positions (see module docstring)."""
    for table in ("trafo", "trafo3w"):
        df = net[table]
        if len(df) == 0 or "tap_pos" not in df:
            continue
        if "tap_changer_type" not in df:
            df["tap_changer_type"] = None
        df["tap_changer_type"] = df["tap_changer_type"].astype(object)
        missing = df["tap_pos"].notna() & df["tap_changer_type"].isna()
        df.loc[missing, "tap_changer_type"] = "Ratio"


#: Bump when the pickled net changes (the version is part of the entry's name and manifest).
NET_CACHE_VERSION = 2
_NET_FILE = "net.pkl"


def build_net(code: str, use_cache: bool = True) -> Any:
    """The SimBench net of ``code`` with the tap-changer fix, unscaled and without profiles.

    With ``use_cache`` the raw net is pickled on first use (keyed by the pandapower and
    simbench versions, verified by its checksum when read) because ``get_simbench_net``
    reads the whole CSV data set each time.
    """
    check_code(code)
    key = f"{code}__v{NET_CACHE_VERSION}__pp{pp.__version__}__sb{simbench.__version__}"
    entry = cache_dir() / "nets" / key
    net = None
    if use_cache and verified(entry, NET_CACHE_VERSION):
        with (entry / _NET_FILE).open("rb") as fh:
            net = pickle.load(fh)
    if net is None:
        try:
            net = simbench.get_simbench_net(code)
        except Exception as exc:
            raise ValueError(f"could not load SimBench code {code!r}: {exc}") from exc
        if use_cache:
            blob = pickle.dumps(net, protocol=pickle.HIGHEST_PROTOCOL)
            atomic_write(entry / _NET_FILE, lambda fh: fh.write(blob))
            write_manifest(entry, [_NET_FILE], NET_CACHE_VERSION)
    fix_tap_changers(net)
    return net


def load_network(
    code: str, pv_scale: float = 1.0, storage_scale: float = 1.0, load_scale: float = 1.0
) -> DistributionNetwork:
    """Load SimBench network ``code`` with scaled PV, storage and load.

    ``pv_scale`` multiplies the rated power and the profile of PV sgens (other sgens stay),
    ``storage_scale`` the power and energy limits of every storage, ``load_scale`` every load.
    Raises ``ValueError`` for an unknown code.
    """
    net = build_net(code)
    raw = raw_profiles(code, net)

    # Fold pandapower's per-element ``scaling`` into the absolute values so that set-points
    # written into the tables are what flows (scaling is 1 in SimBench anyway).
    for table in ("load", "sgen", "storage"):
        df = net[table]
        if len(df) and "scaling" in df:
            scaling = df["scaling"].fillna(1.0).to_numpy(dtype=float)
            if not np.allclose(scaling, 1.0):
                for key, t, _ in PROFILE_KEYS:
                    if t == table:
                        raw[key] = raw[key].scaled(scaling)
                df["p_mw"] *= scaling
                df["q_mvar"] *= scaling
            df["scaling"] = 1.0

    pv_mask = is_pv(net.sgen["type"]) if len(net.sgen) else np.zeros(0, dtype=bool)
    sgen_factor = np.where(pv_mask, pv_scale, 1.0)
    # Lazy: a profile row is scaled when read (bit-identical to scaling the whole year).
    profiles = {
        "load_p": raw["load_p"].scaled(load_scale),
        "load_q": raw["load_q"].scaled(load_scale),
        "sgen_p": raw["sgen_p"].scaled(sgen_factor),
    }
    for col in ("p_mw", "q_mvar", "sn_mva"):
        net.load[col] *= load_scale
    for col in ("p_mw", "sn_mva"):
        net.sgen[col] = net.sgen[col] * sgen_factor

    sto = net.storage
    for col in ("p_mw", "sn_mva", "max_e_mwh", "min_e_mwh", "min_p_mw", "max_p_mw"):
        if col in sto:
            sto[col] *= storage_scale
    p_max = np.fmax(
        sto.get("min_p_mw", pd.Series(np.nan, sto.index)).abs().to_numpy(dtype=float),
        sto.get("max_p_mw", pd.Series(np.nan, sto.index)).abs().to_numpy(dtype=float),
    )
    sn = sto["sn_mva"].to_numpy(dtype=float)
    p_max = np.where(np.isnan(p_max) | (p_max <= 0), sn, p_max)
    e_max = sto["max_e_mwh"].to_numpy(dtype=float)

    if len(net.ext_grid) != 1:
        log.warning("%s has %d ext_grids; using the first as interface", code, len(net.ext_grid))
    return DistributionNetwork(
        code=code,
        net=net,
        profiles=profiles,
        pv_mask=pv_mask,
        interface_bus=int(net.ext_grid["bus"].iloc[0]),
        storage_e_max_mwh=np.nan_to_num(e_max),
        storage_p_max_mw=np.nan_to_num(p_max),
    )
