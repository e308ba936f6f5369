"""Timing helpers shared by the benchmarks: the machine is noisy, so report medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable


def median_ms(func: Callable, items: Iterable) -> float:
    """Median wall time of ``func(item)`` over ``items``, in milliseconds."""
    times = []
    for item in items:
        t0 = time.perf_counter()
        func(item)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3
