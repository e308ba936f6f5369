"""The shared constraint-generation mechanism (market_sim.grid.linearised), without a grid.

A scripted problem replays a sequence of AC verdicts, so that the loop's rules can be checked
one by one: margins grow per failure, a verified point is polished while it gains, a failure
after a verified point keeps that point, and the round and failure limits hold.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from market_sim.grid.linearised import (
    FLEXIBILITY_AREA,
    LOCAL_MARKET,
    TSO_MANAGED,
    VALIDATION,
    Checked,
    constraint_generation,
    spread,
)


class Scripted:
    """Verdicts in order: ``"fail"``, ``"diverge"``, ``"none"`` (no LP optimum) or a value."""

    def __init__(self, verdicts: list[object], learns: bool = True) -> None:
        self.verdicts, self.learns = list(verdicts), learns
        self.scales: list[float] = []

    def solve(self, margin_scale: float) -> np.ndarray | None:
        self.scales.append(margin_scale)
        return None if self.verdicts[0] == "none" else np.zeros(1)

    def check(self, x: np.ndarray, spare_flows: int) -> Checked:
        verdict = self.verdicts.pop(0)
        if verdict == "fail":
            return Checked(x, True, False)
        if verdict == "diverge":
            return Checked(x, False, False)
        return Checked(x, True, True, float(verdict))

    def learn(self, at: Checked) -> bool:
        return self.learns


def test_margins_grow_per_failure_and_the_round_limit_holds() -> None:
    problem = Scripted(["fail"] * 20)
    search = constraint_generation(problem, VALIDATION)
    assert search.ended == "exhausted" and search.best is None
    assert search.checks == VALIDATION.max_rounds
    assert problem.scales == [1.0 + f for f in range(VALIDATION.max_rounds)]
    assert [TSO_MANAGED.margin_scale(f) for f in range(3)] == [1.0, 4.0, 16.0]
    assert LOCAL_MARKET.margin_scale(3) == 1.0


def test_polish_keeps_the_best_and_stops_when_it_gains_little() -> None:
    search = constraint_generation(Scripted(["fail", 5.0, 7.0, 7.0000001]), VALIDATION)
    assert search.ended == "verified" and search.best.value == 7.0000001 and search.checks == 4
    # A failing polishing step keeps the verified point.
    search = constraint_generation(Scripted([5.0, "fail"]), VALIDATION)
    assert search.ended == "overshoot" and search.best.value == 5.0
    # Without polishing (the TSO, the local market) the first verified point ends the search.
    assert constraint_generation(Scripted([1.0, "fail"]), TSO_MANAGED).checks == 1


def test_failure_limit_divergence_and_nothing_to_learn() -> None:
    search = constraint_generation(Scripted(["fail"] * 10), FLEXIBILITY_AREA, floor=-np.inf)
    assert search.ended == "exhausted" and search.failures == FLEXIBILITY_AREA.max_failures
    assert search.last_failed is not None
    search = constraint_generation(Scripted(["fail", "diverge"]), VALIDATION)
    assert search.ended == "diverged" and search.failures == 1
    assert constraint_generation(Scripted(["fail"], learns=False), VALIDATION).ended == "stuck"
    assert constraint_generation(Scripted(["none"]), VALIDATION).ended == "infeasible"
    # One extra round only: the TSO's clearing after dropping a failing DSO.
    assert (
        constraint_generation(Scripted(["fail"] * 5), replace(TSO_MANAGED, max_rounds=1)).checks
        == 1
    )


def test_screening_spreads_over_zones() -> None:
    """The worst constraint of every zone comes before the second worst of any zone."""
    pos = np.array([10, 11, 12, 20, 21, 30])
    badness = np.array([5.0, 4.0, 3.0, 1.0, 0.5, 0.1])
    zone = np.zeros(40, dtype=np.int64)
    zone[20:30], zone[30:] = 1, 2
    assert list(spread(pos, badness, zone, 3)) == [10, 20, 30]
    assert list(spread(pos, badness, zone, 5)) == [10, 11, 20, 21, 30]
    assert len(spread(pos[:0], badness[:0], zone, 3)) == 0
    assert list(spread(pos, badness, zone, None)) == list(pos)  # no limit: all, as given
