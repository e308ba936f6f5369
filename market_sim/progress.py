"""Progress of a long run: one bar on a terminal, a log line every few percent elsewhere.

A year is tens of thousands of periods: on a terminal one tqdm bar (periods, rate, time left)
with log lines printed above it; in a batch job or CI log, where bar frames would be
thousands of lines, one log line every ``every`` of the run instead.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)


class Progress(contextlib.ExitStack):
    """Counts a run's periods; use as a context manager around the run."""

    def __init__(self, total: int, enabled: bool = True, every: float = 0.05) -> None:
        super().__init__()
        self.total, self.done, self.label = total, 0, ""
        self.on_terminal = enabled and sys.stderr.isatty()
        self.logged = enabled and not self.on_terminal
        self.step = max(1, round(total * every))
        self.started = time.perf_counter()
        self.bar = tqdm(total=total, unit="period", disable=not self.on_terminal)

    def __enter__(self) -> Progress:
        super().__enter__()
        self.callback(self.bar.close)
        if self.on_terminal:
            self.enter_context(logging_redirect_tqdm())
        return self

    def describe(self, label: str) -> None:
        self.label = label
        self.bar.set_description(label)

    def update(self) -> None:
        """One period done."""
        self.done += 1
        self.bar.update(1)
        if self.logged and (self.done % self.step == 0 or self.done == self.total):
            rate = self.done / max(time.perf_counter() - self.started, 1e-9)
            left = (self.total - self.done) / rate
            log.info(
                "%s: %d/%d periods (%.0f %%), %.2f periods/s, %.0f s left",
                self.label, self.done, self.total, 100 * self.done / self.total, rate, left,
            )  # fmt: skip
