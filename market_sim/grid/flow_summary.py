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


@dataclass(frozen=True)
class LimitCheck:
    """One converged power flow against one set of limits: the bus voltages, line and trafo
    loadings of the monitored elements (NaN elsewhere) and, per element table (bus, line,
    trafo), which monitored elements break the limits.

    The one rule both the counts of :func:`summary` and the element labels of
    :func:`violated_elements` come from, worked out once per power flow: the delivery stage
    asks both of each of its power flows (:attr:`~.powerflow.PowerFlowDetail.limit_check`).
    """

    vm: np.ndarray
    line: np.ndarray
    trafo: np.ndarray
    masks: dict[str, np.ndarray]


def check_limits(
    net: Any, flows: Flows, limits: Limits, monitored: Monitored | None = None
) -> LimitCheck:
    """The :class:`LimitCheck` of ``flows`` against ``limits`` (``monitored``: the net's
    :class:`Monitored`, if the caller keeps it)."""
    mon = monitored or Monitored.of(net)
    vm = np.where(mon.bus, flows.vm_pu, np.nan)
    line = np.where(mon.line, flows.line_loading_percent, np.nan)
    trafo = np.where(mon.trafo, flows.trafo_loading_percent, np.nan)
    # NaN (not monitored, not computed) compares False without a floating-point warning
    masks = {
        "bus": (vm > limits.vm_max_pu + VIOLATION_TOL) | (vm < limits.vm_min_pu - VIOLATION_TOL),
        "line": line > limits.max_loading_percent + VIOLATION_TOL,
        "trafo": trafo > limits.trafo_limits(len(trafo)) + VIOLATION_TOL,
    }
    return LimitCheck(vm, line, trafo, masks)


def violated_elements(net: Any, check: LimitCheck) -> frozenset[str]:
    """Labels ("bus 12", "line 3", "trafo 0": table and pandapower index) of the elements that
    break the limits of ``check``: what lets the KPIs tell violations already there without
    any DER activation from those the activation caused, element by element."""
    return frozenset(
        f"{table} {index}"
        for table, mask in check.masks.items()
        for index in net[table].index.to_numpy()[mask].tolist()
    )


def summarise(
    net: Any, flows: Flows, limits: Limits, monitored: Monitored | None = None
) -> PowerFlowResult:
    """Count the limit violations of one converged power flow (``monitored``: the net's
    :class:`Monitored`, if the caller keeps it)."""
    return summary(flows, check_limits(net, flows, limits, monitored))


def summary(flows: Flows, check: LimitCheck) -> PowerFlowResult:
    """The :class:`~market_sim.types.PowerFlowResult` of a converged power flow and its
    :class:`LimitCheck` (``count_nonzero``: the count a mask's ``sum`` gives, without its
    reduction's Python wrapper)."""
    vm, masks = check.vm, check.masks
    fin = vm[np.isfinite(vm)]
    return PowerFlowResult(
        converged=True,
        vm_min_pu=float(fin.min()) if fin.size else float("nan"),
        vm_max_pu=float(fin.max()) if fin.size else float("nan"),
        max_line_loading_percent=_max(check.line),
        max_trafo_loading_percent=_max(check.trafo),
        n_voltage_violations=int(np.count_nonzero(masks["bus"])),
        n_line_violations=int(np.count_nonzero(masks["line"])),
        n_trafo_violations=int(np.count_nonzero(masks["trafo"])),
        interface_p_mw=-float(flows.ext_p_mw),
        interface_q_mvar=-float(flows.ext_q_mvar),
    )


def not_converged() -> PowerFlowResult:
    """The summary of a power flow that did not converge: nothing known, no violation counted."""
    nan = float("nan")
    return PowerFlowResult(False, nan, nan, nan, nan, 0, 0, 0, nan, nan)
