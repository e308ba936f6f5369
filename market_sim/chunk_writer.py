"""A model folder's chunks written on a thread of their own while the next chunk runs.

Encoding a chunk's parquet files and writing them (a tenth of a quickstart period's time)
runs in Arrow's C++ with the GIL released, so on a second core it overlaps the simulation of
the next chunk instead of adding to it. One chunk at a time: :meth:`ChunkWriter.write` first
waits for the chunk before, so memory holds at most two chunks' tables, the folder's files
are written in chunk order (tables, then the state naming the chunk, then ``run.json``) and
an error of one write surfaces, as the run's error, at the next write or at the end.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import pyarrow as pa

from market_sim.run_folder import ModelFolder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """One chunk of a run, ready to be written: its tables, the state after it (None: a
    chunk cut short, written to be read, not resumed from) and what ``run.json`` says then."""

    index: int
    tables: dict[str, pa.Table]
    state: bytes | None
    first_period: int
    last_period: int
    wall_time_s: float


class ChunkWriter:
    """Writes the chunks of one model folder in order, one at a time, on one thread.

    Used as a context manager: leaving it waits for the last chunk, so that whatever the run
    then says of itself (complete, interrupted, failed) is written after its last chunk. A
    write's error leaving the block raises; if the block is already raising, it is logged.
    """

    def __init__(self, folder: ModelFolder, model: str, n_periods: int) -> None:
        self.folder, self.model, self.n_periods = folder, model, n_periods
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chunks-{model}")
        self._pending: Future[None] | None = None

    def write(self, chunk: Chunk) -> None:
        """Start writing ``chunk`` once the chunk before it is on disk."""
        self.wait()
        self._pending = self._pool.submit(self._write, chunk)

    def wait(self) -> None:
        """Return when every chunk handed over is on disk; raise the error of one that failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _write(self, chunk: Chunk) -> None:
        self.folder.write_chunk(chunk.index, chunk.tables, chunk.state)
        self.folder.update(
            last_completed_period=chunk.last_period,
            chunks=chunk.index + 1,
            wall_time_s=chunk.wall_time_s,
        )
        log.info(
            "%s: chunk %d written (periods %d-%d of %d) to %s",
            self.model, chunk.index, chunk.first_period, chunk.last_period, self.n_periods,
            self.folder.path,
        )  # fmt: skip

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.wait()
        except Exception:
            if error is None:
                raise
            log.exception("%s: writing a chunk failed while the run was stopping", self.model)
        finally:
            self._pool.shutdown(wait=True)
