"""Timing helpers shared by the benchmarks: the machine is noisy, so report medians."""

from __future__ import annotations

import statistics
import sys
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


def replace_in_modules(name: str, original: Callable, replacement: Callable) -> Callable[[], None]:
    """Put ``replacement`` wherever a market_sim module holds ``original`` as ``name`` (its
    own module, and every one that imported it by name), so that every call of it is seen;
    returns the function that puts ``original`` back."""
    users = [m for n, m in sys.modules.items() if n.startswith("market_sim")]
    users = [m for m in users if getattr(m, name, None) is original]
    for module in users:
        setattr(module, name, replacement)
    return lambda: [setattr(module, name, original) for module in users]
