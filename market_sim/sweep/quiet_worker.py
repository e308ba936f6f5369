"""A Dask worker plugin: the workers of a sweep's own LocalCluster report only critical errors.

A worker process configures its logging when it imports distributed, apart from the command
line's: stopped with the cluster (Ctrl-C, the end of a sweep) while its heartbeat was under
way, it logged a 30-line traceback of the closed connection to the terminal. What a worker does
wrong reaches the driver anyway: a run's error in its sealed folder, a dead worker as the
failed future. A plugin, rather than a call on the running workers, also quiets a worker that
its nanny restarts. (Its own module: distributed is imported only when a sweep runs.)
"""

from __future__ import annotations

import logging

from distributed import Worker
from distributed.diagnostics.plugin import WorkerPlugin


class QuietWorker(WorkerPlugin):
    """Sets the worker's ``distributed`` loggers to critical only."""

    def setup(self, worker: Worker) -> None:
        """Called by each worker when the plugin is registered, and when a worker starts."""
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
