"""The energy schedule's fallback solver: PIPS, the interior-point QP solver of pandapower.

HiGHS's active-set QP solver occasionally stops "optimal" with primal infeasibilities (a few %
of random case39 loads, whatever the options); pandapower's rundcopp solves the same QP with
PIPS, which then still converges. The problem is the schedule's QP in matrix form over
``x = [p (G), below (R), theta_mw (B), flow (L)]``, built once per run; ``below`` are the MW
the relief units run below their minimum outputs (see :mod:`market_sim.markets.schedule`).
PIPS reports a failure by not converging (a singular step included); ``LinAlgError`` is the
one exception its linear algebra may raise, anything else is a bug and propagates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from market_sim.markets.transmission import TransmissionNetwork


@dataclass(frozen=True)
class PipsSolution:
    """A converged PIPS solve: dispatch ``gen_mw`` and ``below_min_mw`` per unit (output is
    their difference), branch flows, the objective (EUR/h incl. constant terms and the relief's
    price) and nodal prices (d cost / d load, as the HiGHS duals)."""

    gen_mw: np.ndarray
    below_min_mw: np.ndarray
    flow_mw: np.ndarray
    cost_eur_per_h: float
    price_eur_per_mwh: np.ndarray


class PipsSchedule:
    """The schedule's QP for PIPS: declared on the first fallback, re-used afterwards."""

    def __init__(
        self, network: TransmissionNetwork, relief_units: np.ndarray, relief_cost: np.ndarray
    ):
        self.network = network
        self.relief_units = np.asarray(relief_units, dtype=np.int64)
        self.relief_cost = np.asarray(relief_cost, dtype=float)
        self._problem: dict | None = None

    def solve(self, load: np.ndarray) -> tuple[PipsSolution | None, str]:
        """Solve for bus loads ``load``: the solution (None if PIPS failed) and a message."""
        from pandapower.pypower.qps_pips import qps_pips

        net = self.network
        if self._problem is None:
            self._problem = pips_problem(net, self.relief_units, self.relief_cost)
        prob = self._problem
        rhs = np.r_[net.branches["shift_mw"].to_numpy(), load + net.shunt_mw]
        n_g, n_r, n_l = net.n_generators, len(self.relief_units), net.n_branches
        x0 = np.clip(np.zeros(len(prob["c"])), prob["xmin"], prob["xmax"])
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
        except np.linalg.LinAlgError as err:
            return None, f"PIPS raised LinAlgError: {err}; PIPS fallback did not converge"
        if not converged:
            return None, "PIPS fallback did not converge"
        below = np.zeros(n_g)
        below[self.relief_units] = x[n_g : n_g + n_r]
        return PipsSolution(
            gen_mw=x[:n_g],
            below_min_mw=below,
            flow_mw=x[len(x) - n_l :],
            cost_eur_per_h=float(f) + float(net.generators["c0_eur_per_h"].sum()),
            price_eur_per_mwh=(lam["mu_l"] - lam["mu_u"])[n_l:],
        ), "optimal"


def pips_problem(
    net: TransmissionNetwork,
    relief_units: np.ndarray | None = None,
    relief_cost: np.ndarray | None = None,
) -> dict:
    """H, c, A (equalities: flow definition, then nodal balance) and the variable bounds;
    ``relief_cost``: EUR/MWh of each of ``relief_units`` below its minimum output."""
    gen, br = net.generators, net.branches
    relief = np.zeros(0, np.int64) if relief_units is None else np.asarray(relief_units, np.int64)
    n_g, n_r, n_b, n_l = net.n_generators, len(relief), net.n_buses, net.n_branches
    b = br["b_pu"].to_numpy()
    lines = np.arange(n_l)
    f_pos, t_pos = br["from_pos"].to_numpy(), br["to_pos"].to_numpy()
    # flow - b (theta_f - theta_t) = shift
    flow_def = sparse.hstack(
        [
            sparse.csr_matrix((n_l, n_g + n_r)),
            sparse.csr_matrix(
                (np.r_[-b, b], (np.r_[lines, lines], np.r_[f_pos, t_pos])), (n_l, n_b)
            ),
            sparse.identity(n_l, format="csr"),
        ]
    )
    # gen - below - outflow + inflow = load + shunt
    cg = sparse.csr_matrix((np.ones(n_g), (gen["bus_pos"].to_numpy(), np.arange(n_g))), (n_b, n_g))
    cr = -cg[:, relief]
    cft = sparse.csr_matrix(
        (np.r_[np.ones(n_l), -np.ones(n_l)], (np.r_[f_pos, t_pos], np.r_[lines, lines])),
        (n_b, n_l),
    )
    balance = sparse.hstack([cg, cr, sparse.csr_matrix((n_b, n_b)), -cft])
    theta_lo = np.full(n_b, -np.inf)
    theta_lo[net.ref_pos] = net.base_mva * net.ref_angle_rad
    theta_hi = theta_lo.copy()
    theta_hi[np.isinf(theta_hi)] = np.inf
    rating = br["rating_mw"].to_numpy()
    p_min = gen["p_min_mw"].to_numpy()
    n_rest = n_r + n_b + n_l
    return {
        "H": sparse.diags(np.r_[2.0 * gen["c2_eur_per_mw2h"].to_numpy(), np.zeros(n_rest)]),
        "c": np.r_[
            gen["c1_eur_per_mwh"].to_numpy(),
            np.zeros(0) if relief_cost is None else np.asarray(relief_cost, dtype=float),
            np.zeros(n_b + n_l),
        ],
        "A": sparse.vstack([flow_def, balance], format="csr"),
        "xmin": np.r_[p_min, np.zeros(n_r), theta_lo, -rating],
        "xmax": np.r_[gen["p_max_mw"].to_numpy(), p_min[relief], theta_hi, rating],
    }
