"""The background chunk writer: chunks on disk in order, one at a time, errors not lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from market_sim.chunk_writer import Chunk, ChunkWriter


class _Folder:
    """A model folder that records what is written, from which thread, and can fail."""

    def __init__(self, fail_at: int | None = None, delay_s: float = 0.0) -> None:
        self.path = Path("/nowhere")
        self.fail_at, self.delay_s = fail_at, delay_s
        self.calls: list[tuple[str, int, str]] = []
        self.busy = threading.Lock()

    def write_chunk(self, index: int, tables: dict, state: bytes | None) -> None:
        assert self.busy.acquire(blocking=False), "two chunks written at once"
        try:
            time.sleep(self.delay_s)
            if index == self.fail_at:
                raise OSError(f"disk full at chunk {index}")
            self.calls.append(("tables", index, threading.current_thread().name))
        finally:
            self.busy.release()

    def update(self, **info: object) -> None:
        self.calls.append(("run.json", int(info["chunks"]) - 1, threading.current_thread().name))


def _chunk(index: int) -> Chunk:
    return Chunk(index, {}, b"state", index * 96, index * 96 + 95, 1.0)


def test_chunks_are_written_in_order_off_the_main_thread_and_all_before_the_end():
    folder = _Folder(delay_s=0.05)
    with ChunkWriter(folder, "hybrid", 4 * 96) as writer:
        for index in range(4):
            writer.write(_chunk(index))
    expected = [(kind, i) for i in range(4) for kind in ("tables", "run.json")]
    assert [(kind, i) for kind, i, _ in folder.calls] == expected
    assert all(thread != threading.current_thread().name for *_, thread in folder.calls)


def test_a_failed_write_is_raised_at_the_next_write():
    folder = _Folder(fail_at=0)
    with pytest.raises(OSError, match="chunk 0"), ChunkWriter(folder, "hybrid", 192) as writer:
        writer.write(_chunk(0))
        time.sleep(0.05)
        writer.write(_chunk(1))
    assert ("tables", 1) not in [(kind, i) for kind, i, _ in folder.calls]


def test_a_failed_last_write_is_raised_when_the_block_ends():
    folder = _Folder(fail_at=1)
    with pytest.raises(OSError, match="chunk 1"), ChunkWriter(folder, "hybrid", 192) as writer:
        writer.write(_chunk(0))
        writer.write(_chunk(1))
    assert [(kind, i) for kind, i, _ in folder.calls] == [("tables", 0), ("run.json", 0)]


def test_the_runs_own_error_wins_over_a_failed_write(caplog):
    folder = _Folder(fail_at=0)
    with pytest.raises(KeyboardInterrupt), ChunkWriter(folder, "hybrid", 96) as writer:
        writer.write(_chunk(0))
        raise KeyboardInterrupt
    assert "writing a chunk failed" in caplog.text
