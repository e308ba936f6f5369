"""Worker processes that each load a scenario's networks once: ``run --jobs``, ``compare``.

Why processes and not threads: a run is pure Python, numpy and HiGHS under the GIL; why spawn
and not fork: a forked HiGHS or numba state (threads) can hang a child. Workers ignore Ctrl-C:
the parent sets a shared multiprocessing Event (:func:`shared_stop` in the worker), and the
runs stop after their period, writing what is complete.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from typing import Any

from market_sim.config import ScenarioConfig
from market_sim.logs import setup
from market_sim.scenario import Scenario, load_scenario

_SCENARIO: Scenario | None = None  # a worker process's scenario, loaded once per process
_SHARED_STOP: Any = None  # the parent's stop request, seen by every worker


def in_processes(
    config: ScenarioConfig,
    source: str,
    jobs: int,
    tasks: list[tuple[Callable[..., Any], tuple]],
    shared: Any = None,
    poll: Callable[[], None] | None = None,
) -> list[Any]:
    """Call each task (a module-level function and its arguments) in one of ``jobs`` spawned
    processes, each of which loads the scenario's networks once (:func:`worker_scenario`);
    their results in task order. ``shared``: the parent's stop request (a multiprocessing
    Event); ``poll`` is called every second while they run; the first failure cancels the
    tasks not started and is raised.
    """
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    start = (config, source, level, shared)
    with ProcessPoolExecutor(min(jobs, len(tasks)), context, _start_worker, start) as pool:
        futures: list[Future] = [pool.submit(func, *args) for func, args in tasks]
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
                if poll is not None:
                    poll()
                for future in done:
                    future.result()  # the first failure, raised here
            return [f.result() for f in futures]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _start_worker(config: ScenarioConfig, source: str, level: int, shared: Any) -> None:
    """Worker initialiser: the parent's log level, Ctrl-C left to the parent, and the
    scenario's networks loaded once for every run of this process."""
    global _SCENARIO, _SHARED_STOP
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup(level <= logging.DEBUG)
    logging.getLogger().setLevel(level)
    _SHARED_STOP = shared
    _SCENARIO = load_scenario(config, source)


def worker_scenario() -> Scenario:
    """The scenario this worker process loaded (:func:`in_processes`)."""
    assert _SCENARIO is not None, "worker started without its scenario"
    return _SCENARIO


def shared_stop() -> Any:
    """The parent's stop request this worker was started with (None: none)."""
    return _SHARED_STOP
