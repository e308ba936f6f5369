"""Everything a run carries from one market period to the next, in one explicit object.

A period reads the :class:`RunState` left by the previous one and leaves a new one: the
simulated clock, the devices' energy (state of charge, the energy debts loads and batteries
repay), the TSO's forecast error (an AR(1) process), what each DSO network really delivered
(the next period's measurements), the thermal state of each network's transformers (after
delivery, and at the baseline with no DER activated), and the random streams. Nothing else
survives a period boundary except solvers' warm starts, which the model resets at every
checkpoint boundary, so that a run saved with :meth:`RunState.to_bytes` and restored with
:meth:`RunState.from_bytes` continues exactly as the uninterrupted run does.

The bytes are a NumPy ``.npz`` archive (arrays bit for bit, no pickled code) with the scalars
and random-generator states as JSON.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

from market_sim.agents.prosumer import DeviceEnergy
from market_sim.grid.aging import ThermalState
from market_sim.types import ELEMENT_TABLES, Injections

FORMAT = "market_sim.run_state/3"
#: Random streams of a run, each its own generator so that one process's draws never shift
#: another's (the models of a scenario face the same forecast errors whatever they dispatch).
STREAMS = ("forecast_error", "delivery")
#: the array fields of a ThermalState, in its constructor's order (ambient_c follows them)
THERMAL_ARRAYS = ("top_oil_rise_k", "hot_spot_rise_1_k", "hot_spot_rise_2_k")


def new_streams(seed: int) -> dict[str, np.random.Generator]:
    return {name: np.random.default_rng([seed, k]) for k, name in enumerate(STREAMS)}


@dataclass
class RunState:
    """The state at a period boundary: the next period to run and what it starts from."""

    period: int
    time_s: float  # simulated clock, s since the run's start
    energy: DeviceEnergy
    forecast_error: float  # AR(1) state: share of the transmission load
    streams: dict[str, np.random.Generator]
    delivered: dict[str, Injections] = field(default_factory=dict)  # by DSO, last period
    #: transformers' thermal state by DSO, after delivery and at the baseline (the first
    #: period's wear stage starts them in the steady state of its loading)
    thermal: dict[str, ThermalState] = field(default_factory=dict)
    baseline_thermal: dict[str, ThermalState] = field(default_factory=dict)

    @classmethod
    def initial(cls, seed: int, energy: DeviceEnergy, error_sd: float) -> RunState:
        """The state before the first period: the forecast error drawn from its stationary
        distribution N(0, error_sd), so that the first periods' needs are as large as any
        (from 0, an AR(1) with coefficient 0.9 takes hours to reach its spread)."""
        streams = new_streams(seed)
        error = error_sd * float(streams["forecast_error"].normal())
        return cls(0, 0.0, energy, error, streams)

    def to_bytes(self) -> bytes:
        """The state as bytes (a checkpoint)."""
        meta = {
            "format": FORMAT,
            "period": self.period,
            "time_s": self.time_s.hex(),
            "forecast_error": self.forecast_error.hex(),
            "streams": {k: g.bit_generator.state for k, g in self.streams.items()},
            "delivered": sorted(self.delivered),
            "thermal": {k: sorted(v) for k, v in self._thermal().items()},
        }
        energy = self.energy
        arrays = {
            "soc_mwh": energy.soc_mwh,
            "debt_mwh": energy.debt_mwh,
            "overdue_mwh": energy.overdue_mwh,
        }
        for name, inj in self.delivered.items():
            arrays[f"{name}/trafo_tap_pos"] = inj.trafo_tap_pos
            for table in ELEMENT_TABLES:
                arrays[f"{name}/p_mw/{table}"] = inj.p_mw[table]
                arrays[f"{name}/q_mvar/{table}"] = inj.q_mvar[table]
        for kind, states in self._thermal().items():
            for name, state in states.items():
                for column in THERMAL_ARRAYS:
                    arrays[f"{kind}/{name}/{column}"] = getattr(state, column)
                arrays[f"{kind}/{name}/ambient_c"] = np.array([state.ambient_c])
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> RunState:
        """A state saved by :meth:`to_bytes`."""
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes())
            if meta.get("format") != FORMAT:
                raise ValueError(f"not a run state of {FORMAT}: {meta.get('format')!r}")
            arrays = {k: archive[k] for k in archive.files if k != "meta"}
        streams = {}
        for name, state in meta["streams"].items():
            generator = np.random.default_rng()
            generator.bit_generator.state = state
            streams[name] = generator
        delivered = {
            name: Injections(
                {t: arrays[f"{name}/p_mw/{t}"] for t in ELEMENT_TABLES},
                {t: arrays[f"{name}/q_mvar/{t}"] for t in ELEMENT_TABLES},
                arrays[f"{name}/trafo_tap_pos"],
            )
            for name in meta["delivered"]
        }
        thermal = {
            kind: {
                name: ThermalState(
                    *(arrays[f"{kind}/{name}/{c}"] for c in THERMAL_ARRAYS),
                    float(arrays[f"{kind}/{name}/ambient_c"][0]),
                )
                for name in names
            }
            for kind, names in meta["thermal"].items()
        }
        return cls(
            period=meta["period"],
            time_s=float.fromhex(meta["time_s"]),
            energy=DeviceEnergy(arrays["soc_mwh"], arrays["debt_mwh"], arrays["overdue_mwh"]),
            forecast_error=float.fromhex(meta["forecast_error"]),
            streams=streams,
            delivered=delivered,
            **thermal,
        )

    def _thermal(self) -> dict[str, dict[str, ThermalState]]:
        """The thermal states by field name (what to_bytes writes and from_bytes reads)."""
        return {"thermal": self.thermal, "baseline_thermal": self.baseline_thermal}
