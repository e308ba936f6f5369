"""Logging set-up: our messages through ``logging``; third-party chatter kept off the terminal."""

from __future__ import annotations

import logging
import sys
import warnings

NOISY = (
    "pandapower",
    "numba",
    "simbench",
    "pyomo",
    "lightsim2grid",
    "matplotlib",
    "MESA",
    "distributed",  # Dask's scheduler and workers of a sweep: a dozen lines per worker
)


def quiet_third_party() -> None:
    """Silence pandapower's, numba's and pyomo's warnings, which would flood a run's output."""
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in (r"pandapower.*", r"numba.*", r"simbench.*", r"pyomo.*", r"lightsim2grid.*"):
        warnings.filterwarnings("ignore", module=module)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        from numba.core.errors import NumbaPerformanceWarning

        warnings.filterwarnings("ignore", category=NumbaPerformanceWarning)
    except ImportError:  # numba is optional at import time
        pass


def quiet_library_loggers() -> None:
    """On import: the third-party loggers that would print warnings into a notebook or a
    script (pandapower's "gen vm_pu > bus max_vm_pu" on every case39 load) report errors only,
    unless the user has set their level already."""
    for name in NOISY:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.ERROR)


def setup(verbose: bool = False) -> None:
    """Configure the root logger for the command line."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    quiet_third_party()


#: The warning filter of the resource tracker's report of a killed process's semaphores.
LEAKED_SEMAPHORES = "ignore:resource_tracker:UserWarning"


def quiet_resource_tracker() -> None:
    """A worker process still running when a Dask cluster stops (Ctrl-C during a sweep) is
    killed, leaving its semaphores to multiprocessing's resource tracker, whose warning about
    them would be the last line on the terminal. The tracker process takes its warning
    filters from ``sys.warnoptions`` when it starts (importing the sweep starts it): call this
    before."""
    if LEAKED_SEMAPHORES not in sys.warnoptions:
        sys.warnoptions.append(LEAKED_SEMAPHORES)
