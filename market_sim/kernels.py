"""Time spent in the numerical kernels: AC power flows and LP/QP/MILP solves.

A period's stages interleave the kernels with the engine's own work (building tables, routing
messages, recording), so a stage's wall time cannot say how much of a run is the engine.
Each kernel call site is wrapped in :func:`timed`; the model takes the totals at the end of
every period (:func:`take`) into the ``timings`` table (role ``run``), next to the period's
whole wall time, so that the engine's share of a run is read from the run's own tables
(``benchmarks/bench_year.py``).

Totals are per thread: a Dask worker with several threads may run several models at once.
Every HiGHS instance the engine solves with is made or set up by :func:`one_thread_highs`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import highspy

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


def one_thread_highs(highs: highspy.Highs | None = None, **options: object) -> highspy.Highs:
    """``highs`` (a new instance by default) silent, on one thread, with ``options`` set: every
    HiGHS instance the engine solves with is made or set up here.

    One thread, because with HiGHS's default (``threads`` 0) every ``run`` reads the machine's
    CPU topology from ``/sys`` twice, not once, and syncs a scheduler sized by the machine (two
    threads on this 2-core one): a one-column LP took 73-82 us against 37-41 us on one thread,
    on each of a quickstart period's five solves. The LPs and small MILPs here gain nothing from
    threads, and their results do not then depend on the machine's core count.
    """
    highs = highspy.Highs() if highs is None else highs
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("threads", _threads())
    for key, value in options.items():
        highs.setOptionValue(key, value)
    return highs


@functools.cache
def _threads() -> int:
    """HiGHS's ``threads`` for the engine's instances: 1, unless HiGHS's scheduler (one per
    process) already runs another number of threads, set by a solve before the engine's first
    (a notebook's own HiGHS model); then 0, its current number, since HiGHS refuses to solve
    with any other."""
    probe = highspy.Highs()
    probe.setOptionValue("output_flag", False)
    probe.setOptionValue("threads", 1)
    probe.addVar(0.0, 1.0)
    return 1 if probe.run() == highspy.HighsStatus.kOk else 0
