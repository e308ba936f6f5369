"""pandapower's ``runpp``: the reference power flow, and the path for unsupported networks.

:func:`replay_power_flow` is the computation a researcher can repeat from a saved injections
table and the SimBench code alone. :func:`runpp_flows` also solves the networks lightsim2grid
cannot reproduce (:mod:`.lightsim_conversion`): correct, slower, without sensitivities.
``runpp`` signals non-convergence by raising ``LoadflowNotConverged``; any other exception is
a bug and propagates.
"""

from __future__ import annotations

import logging
from typing import Any

import pandapower as pp
import pandas as pd
from pandapower.powerflow import LoadflowNotConverged

from market_sim import kernels
from market_sim.grid.flow_summary import Flows, not_converged, summarise
from market_sim.grid.injections import apply_table
from market_sim.grid.network import build_net
from market_sim.types import Limits, PowerFlowResult

log = logging.getLogger(__name__)


def runpp_flows(net: Any, code: str = "") -> Flows | None:
    """``runpp`` of ``net`` as it stands; None if it does not converge."""
    try:
        with kernels.timed("power_flows"):
            pp.runpp(net, numba=False, calculate_voltage_angles=True, init="dc")
    except LoadflowNotConverged as exc:
        log.debug("%s: pandapower runpp did not converge: %s", code, exc)
        return None
    if not net.converged:
        return None
    return Flows(
        net.res_bus["vm_pu"].to_numpy(dtype=float),
        net.res_line["loading_percent"].to_numpy(dtype=float),
        net.res_trafo["loading_percent"].to_numpy(dtype=float),
        float(net.res_ext_grid["p_mw"].sum()),
        float(net.res_ext_grid["q_mvar"].sum()),
        va_degree=net.res_bus["va_degree"].to_numpy(dtype=float),
        line_p_mw=net.res_line["p_from_mw"].to_numpy(dtype=float),
        line_q_mvar=net.res_line["q_from_mvar"].to_numpy(dtype=float),
        trafo_p_mw=net.res_trafo["p_hv_mw"].to_numpy(dtype=float),
        trafo_q_mvar=net.res_trafo["q_hv_mvar"].to_numpy(dtype=float),
    )


def runpp_result(net: Any, limits: Limits, code: str = "") -> PowerFlowResult:
    """The summary of :func:`runpp_flows` (converged=False instead of raising)."""
    flows = runpp_flows(net, code)
    return not_converged() if flows is None else summarise(net, flows, limits)


def replay_power_flow(
    code: str, table: pd.DataFrame, limits: Limits | None = None
) -> PowerFlowResult:
    """Rebuild network ``code`` fresh from SimBench, apply ``table`` and run pandapower.

    This is the reference computation a researcher can repeat from the saved injections table
    and the SimBench code alone. Scenario scaling does not matter: the table holds absolute
    set-points, and rated sizes do not enter the power flow.
    """
    net = build_net(code, use_cache=False)
    apply_table(net, table)
    return runpp_result(net, limits or Limits(), code)
