"""Time spent in the numerical kernels: AC power flows and LP/QP/MILP solves.

A period's stages interleave the kernels with the engine's own work (building tables, routing
messages, recording), so a stage's wall time cannot say how much of a run is the engine.
Each kernel call site is wrapped in :func:`timed`; the model takes the totals at the end of
every period (:func:`take`) into the ``timings`` table (role ``run``), next to the period's
whole wall time, so that the engine's share of a run is read from the run's own tables
(``benchmarks/bench_year.py``).

Totals are per thread: a Dask worker with several threads may run several models at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: The kernels timed: AC power flows (lightsim2grid, pandapower's runpp and runopp) and
#: optimisation solves (HiGHS, through pyomo's persistent interface, highspy or scipy).
KERNELS = ("power_flows", "solves")

_local = threading.local()


def _spent() -> dict[str, float]:
    if not hasattr(_local, "spent"):
        _local.spent = dict.fromkeys(KERNELS, 0.0)
    return _local.spent


@contextmanager
def timed(kernel: str) -> Iterator[None]:
    """Add the wall time of the ``with`` body to ``kernel``'s total (one of :data:`KERNELS`)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _spent()[kernel] += time.perf_counter() - t0


def take() -> dict[str, float]:
    """The seconds spent in each kernel since the last call, which starts new totals."""
    spent = _spent()
    totals = dict(spent)
    for kernel in KERNELS:
        spent[kernel] = 0.0
    return totals
