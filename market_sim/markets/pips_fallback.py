"""The energy schedule's fallback solver: PIPS, the interior-point QP solver of pandapower.

HiGHS's active-set QP solver occasionally stops "optimal" with primal infeasibilities (a few %
of random case39 loads, whatever the options); pandapower's rundcopp solves the same QP with
PIPS, which then still converges. The problem is the schedule's QP in matrix form over
``x = [p (G), theta_mw (B), flow (L)]``, built once per run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from market_sim.markets.transmission import TransmissionNetwork


@dataclass(frozen=True)
class PipsSolution:
    """A converged PIPS solve: dispatch, branch flows, cost (EUR/h incl. constant terms) and
    nodal prices (d cost / d load, as the HiGHS duals)."""

    gen_mw: np.ndarray
    flow_mw: np.ndarray
    cost_eur_per_h: float
    price_eur_per_mwh: np.ndarray


class PipsSchedule:
    """The schedule's QP for PIPS: declared on the first fallback, re-used afterwards."""

    def __init__(self, network: TransmissionNetwork):
        self.network = network
        self._problem: dict | None = None

    def solve(self, load: np.ndarray) -> tuple[PipsSolution | None, str]:
        """Solve for bus loads ``load``: the solution (None if PIPS failed) and a message."""
        from pandapower.pypower.qps_pips import qps_pips

        net = self.network
        if self._problem is None:
            self._problem = pips_problem(net)
        prob = self._problem
        rhs = np.r_[net.branches["shift_mw"].to_numpy(), load + net.shunt_mw]
        n_g, n_b, n_l = net.n_generators, net.n_buses, net.n_branches
        x0 = np.clip(np.zeros(n_g + n_b + n_l), prob["xmin"], prob["xmax"])
        try:
            x, f, converged, _, lam = qps_pips(
                prob["H"],
                prob["c"],
                prob["A"],
                rhs,
                rhs,
                prob["xmin"],
                prob["xmax"],
                x0,
                {"verbose": 0},
            )
        except Exception as err:  # noqa: BLE001 - reported, not raised
            why = f"PIPS raised {type(err).__name__}: {err}; "
            return None, why + "PIPS fallback did not converge"
        if not converged:
            return None, "PIPS fallback did not converge"
        return PipsSolution(
            gen_mw=x[:n_g],
            flow_mw=x[n_g + n_b :],
            cost_eur_per_h=float(f) + float(net.generators["c0_eur_per_h"].sum()),
            price_eur_per_mwh=(lam["mu_l"] - lam["mu_u"])[n_l:],
        ), "optimal"


def pips_problem(net: TransmissionNetwork) -> dict:
    """H, c, A (equalities: flow definition, then nodal balance) and the variable bounds."""
    gen, br = net.generators, net.branches
    n_g, n_b, n_l = net.n_generators, net.n_buses, net.n_branches
    b = br["b_pu"].to_numpy()
    lines = np.arange(n_l)
    f_pos, t_pos = br["from_pos"].to_numpy(), br["to_pos"].to_numpy()
    # flow - b (theta_f - theta_t) = shift
    flow_def = sparse.hstack(
        [
            sparse.csr_matrix((n_l, n_g)),
            sparse.csr_matrix(
                (np.r_[-b, b], (np.r_[lines, lines], np.r_[f_pos, t_pos])), (n_l, n_b)
            ),
            sparse.identity(n_l, format="csr"),
        ]
    )
    # gen - outflow + inflow = load + shunt
    cg = sparse.csr_matrix((np.ones(n_g), (gen["bus_pos"].to_numpy(), np.arange(n_g))), (n_b, n_g))
    cft = sparse.csr_matrix(
        (np.r_[np.ones(n_l), -np.ones(n_l)], (np.r_[f_pos, t_pos], np.r_[lines, lines])),
        (n_b, n_l),
    )
    balance = sparse.hstack([cg, sparse.csr_matrix((n_b, n_b)), -cft])
    theta_lo = np.full(n_b, -np.inf)
    theta_lo[net.ref_pos] = net.base_mva * net.ref_angle_rad
    theta_hi = theta_lo.copy()
    theta_hi[np.isinf(theta_hi)] = np.inf
    rating = br["rating_mw"].to_numpy()
    n_x = n_g + n_b + n_l
    return {
        "H": sparse.diags(np.r_[2.0 * gen["c2_eur_per_mw2h"].to_numpy(), np.zeros(n_x - n_g)]),
        "c": np.r_[gen["c1_eur_per_mwh"].to_numpy(), np.zeros(n_x - n_g)],
        "A": sparse.vstack([flow_def, balance], format="csr"),
        "xmin": np.r_[gen["p_min_mw"].to_numpy(), theta_lo, -rating],
        "xmax": np.r_[gen["p_max_mw"].to_numpy(), theta_hi, rating],
    }
