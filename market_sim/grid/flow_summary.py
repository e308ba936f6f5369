"""What one converged power flow says about the limits: monitored elements and violations.

Both solver paths (:mod:`.lightsim_model` and :mod:`.pandapower_reference`) produce the same
per-element :class:`Flows`; :func:`summarise` turns them into a
:class:`~market_sim.types.PowerFlowResult` in one place, so the two paths cannot count
violations differently.

Monitored elements (the choice is documented here once): voltage limits apply to in-service
buses below 60 kV, i.e. the MV/LV buses operated by the DSO. The HV side of the HV/MV
transformers belongs to the transmission system and its voltage is the ext_grid set-point.
Loading limits apply to every in-service line and two-winding transformer (HV/MV ones
included: the DSO is responsible for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from market_sim.types import Limits, PowerFlowResult

#: Buses at or above this nominal voltage belong to the transmission side (not monitored).
HV_THRESHOLD_KV = 60.0
#: Slack used when counting limit violations (pu for voltages, percent for loading).
VIOLATION_TOL = 1e-6


@dataclass(frozen=True)
class Flows:
    """Per-element results of one converged power flow, before any limit is applied.

    Arrays are aligned with ``net.bus`` / ``net.line`` / ``net.trafo`` positional order and are
    NaN for elements that were not computed (out of service, isolated). ``ext_p_mw`` and
    ``ext_q_mvar`` are the ext_grid's injection (pandapower's sign). The rest is the network
    state a DSO reports as operational data: bus voltage angles (degree) and the flows into
    each line's from end and each transformer's hv end (MW, Mvar); None where not computed.
    """

    vm_pu: np.ndarray
    line_loading_percent: np.ndarray
    trafo_loading_percent: np.ndarray
    ext_p_mw: float
    ext_q_mvar: float
    va_degree: np.ndarray | None = None
    line_p_mw: np.ndarray | None = None
    line_q_mvar: np.ndarray | None = None
    trafo_p_mw: np.ndarray | None = None
    trafo_q_mvar: np.ndarray | None = None


def monitored_buses(net: Any) -> np.ndarray:
    """Mask over net.bus of buses with voltage limits (in service, below 60 kV)."""
    return (net.bus["in_service"].to_numpy(dtype=bool)) & (
        net.bus["vn_kv"].to_numpy(dtype=float) < HV_THRESHOLD_KV
    )


@dataclass(frozen=True)
class Monitored:
    """Masks over net.bus / net.line / net.trafo of the elements that have limits.

    They depend on the topology only, so a caller that runs many power flows of one net keeps
    them (:func:`~.powerflow.monitored`) instead of reading three pandas columns per flow.
    """

    bus: np.ndarray
    line: np.ndarray
    trafo: np.ndarray

    @classmethod
    def of(cls, net: Any) -> Monitored:
        return cls(
            monitored_buses(net),
            net.line["in_service"].to_numpy(dtype=bool),
            net.trafo["in_service"].to_numpy(dtype=bool),
        )


def _max(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else float("nan")


def violation_masks(
    net: Any, flows: Flows, limits: Limits, monitored: Monitored | None = None
) -> dict[str, np.ndarray]:
    """Per element table (bus, line, trafo), which monitored elements break ``limits``
    (``monitored``: the net's :class:`Monitored`, if the caller keeps it).

    The one rule both the counts of :func:`summarise` and the element labels of
    :func:`violated_elements` come from.
    """
    return _masks(*_monitored(monitored or Monitored.of(net), flows), limits)


def _monitored(mon: Monitored, flows: Flows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bus voltages, line and trafo loadings of the monitored elements (NaN elsewhere)."""
    vm = np.where(mon.bus, flows.vm_pu, np.nan)
    line = np.where(mon.line, flows.line_loading_percent, np.nan)
    trafo = np.where(mon.trafo, flows.trafo_loading_percent, np.nan)
    return vm, line, trafo


def _masks(
    vm: np.ndarray, line: np.ndarray, trafo: np.ndarray, limits: Limits
) -> dict[str, np.ndarray]:
    """The rule of :func:`violation_masks` on the arrays of :func:`_monitored` (which
    :func:`summarise` reads once per power flow: thousands a day)."""
    with np.errstate(invalid="ignore"):
        return {
            "bus": (vm > limits.vm_max_pu + VIOLATION_TOL)
            | (vm < limits.vm_min_pu - VIOLATION_TOL),
            "line": line > limits.max_loading_percent + VIOLATION_TOL,
            "trafo": trafo > limits.trafo_limits(len(trafo)) + VIOLATION_TOL,
        }


def violated_elements(
    net: Any, flows: Flows, limits: Limits, monitored: Monitored | None = None
) -> frozenset[str]:
    """Labels ("bus 12", "line 3", "trafo 0": table and pandapower index) of the elements that
    break ``limits``: what lets the KPIs tell violations already there without any DER
    activation from those the activation caused, element by element."""
    return frozenset(
        f"{table} {index}"
        for table, mask in violation_masks(net, flows, limits, monitored).items()
        for index in net[table].index.to_numpy()[mask].tolist()
    )


def summarise(
    net: Any, flows: Flows, limits: Limits, monitored: Monitored | None = None
) -> PowerFlowResult:
    """Count the limit violations of one converged power flow (``monitored``: the net's
    :class:`Monitored`, if the caller keeps it)."""
    vm, line, trafo = _monitored(monitored or Monitored.of(net), flows)
    masks = _masks(vm, line, trafo, limits)  # the rule of violation_masks, on the same arrays
    fin = vm[np.isfinite(vm)]
    return PowerFlowResult(
        converged=True,
        vm_min_pu=float(fin.min()) if fin.size else float("nan"),
        vm_max_pu=float(fin.max()) if fin.size else float("nan"),
        max_line_loading_percent=_max(line),
        max_trafo_loading_percent=_max(trafo),
        n_voltage_violations=int(masks["bus"].sum()),
        n_line_violations=int(masks["line"].sum()),
        n_trafo_violations=int(masks["trafo"].sum()),
        interface_p_mw=-float(flows.ext_p_mw),
        interface_q_mvar=-float(flows.ext_q_mvar),
    )


def not_converged() -> PowerFlowResult:
    """The summary of a power flow that did not converge: nothing known, no violation counted."""
    nan = float("nan")
    return PowerFlowResult(False, nan, nan, nan, nan, 0, 0, 0, nan, nan)
