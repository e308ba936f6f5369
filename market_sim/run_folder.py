"""A run folder that survives a crash: a writer's lock, chunks with their state, resume.

A scenario folder (``<out>/<scenario>/``) holds one model folder per coordination model and,
while a run writes into it, a ``.lock`` naming the process (pid and host). Each model folder
is written chunk by chunk: the chunk's table files first, then ``state.npz`` (the
:class:`~market_sim.run_state.RunState` after the chunk, naming the chunk), then ``run.json``;
each file under a temporary name, then renamed. So whenever a run is killed, the state names
the last chunk whose tables are all on disk, and a resumed run drops any file of a later,
half-written (or, after Ctrl-C, cut short) chunk and goes on from that state.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from market_sim.files import atomic_write_bytes, atomic_write_text
from market_sim.results import (
    RunFolderError,
    part_name,
    read_run_info,
    write_part,
    write_run_info,
)
from market_sim.tables import TABLES

log = logging.getLogger(__name__)

LOCK = ".lock"
STATE = "state.npz"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class RunLock:
    """The one writer of a scenario folder, as a ``.lock`` file holding its pid and host.

    A lock left by a dead process of this host (a killed run) is taken over with a warning;
    any other holder is refused with one line naming it.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        self.me = {"pid": os.getpid(), "host": socket.gethostname()}

    def check(self) -> None:
        """Raise :class:`RunFolderError` if another live process holds the lock."""
        if not self.path.exists():
            return
        holder = _holder(self.path)
        if holder.get("host") == self.me["host"] and not _alive(int(holder.get("pid", -1))):
            return  # stale: taken over by acquire()
        if holder == self.me:
            return
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        raise RunFolderError(
            f"{self.path.parent}: another run ({who}) is writing into this folder; wait for it "
            f"to end, or remove {self.path} if that process is gone"
        )

    def acquire(self) -> RunLock:
        self.check()
        if self.path.exists() and _holder(self.path) != self.me:
            log.warning(
                "taking over %s of a process that is gone: %s", self.path, _holder(self.path)
            )
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{LOCK}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.me))
        try:
            os.link(tmp, self.path)  # fails if another process created it meanwhile
        except FileExistsError:
            if _holder(self.path) != self.me:
                self.check()
                raise RunFolderError(f"{self.path}: taken by another run meanwhile") from None
        finally:
            tmp.unlink(missing_ok=True)
        return self

    def release(self) -> None:
        if _holder(self.path) == self.me:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def earlier_run(folder: Path) -> list[str]:
    """What a scenario folder already holds besides the lock (an earlier run's files)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(LOCK))


def check_new_run(folder: Path, overwrite: bool) -> None:
    """A new run may write into ``folder``: nobody else is writing, and nothing of an
    earlier run is there unless ``overwrite``. Checked before anything is simulated."""
    RunLock(folder).check()
    found = earlier_run(folder)
    if found and not overwrite:
        raise RunFolderError(
            f"{folder}: holds an earlier run ({', '.join(found)}); allowed: --overwrite to "
            f"replace it, --resume {folder} to continue it, or another --out"
        )


def clear_earlier_run(folder: Path) -> None:
    """Remove every table, model folder and file of an earlier run (the lock is ours)."""
    for name in earlier_run(folder):
        path = folder / name
        log.info("--overwrite: removing %s", path)
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


@dataclass(frozen=True)
class Checkpoint:
    """Where a model folder's run goes on from: the state after its last complete chunk
    (None: from the start) and the index of the next chunk."""

    state: bytes | None
    next_chunk: int


class ModelFolder:
    """One model's run folder, written chunk by chunk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def info(self) -> dict:
        return read_run_info(self.path)

    def update(self, **changes: object) -> None:
        write_run_info(self.path, {**self.info(), **changes})

    def create(self, config_yaml: str, info: dict) -> None:
        """config.yaml and run.json of a run not started yet."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.yaml", config_yaml)
        write_run_info(self.path, {**info, "status": "pending", "last_completed_period": None})

    def write_chunk(self, index: int, tables: dict[str, pa.Table], state: bytes | None) -> None:
        """The chunk's tables (every table, empty ones too, as Arrow tables of their schemas),
        then the state naming it (None: a chunk cut short, written to be read but not resumed
        from)."""
        for name in TABLES:
            write_part(self.path, name, index, tables[name])
        if state is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, run_state=np.frombuffer(state, dtype=np.uint8), chunk=np.int64(index))
        atomic_write_bytes(self.path / STATE, buffer.getvalue())

    def checkpoint(self) -> Checkpoint:
        """The last complete chunk's state; files of later (half-written) chunks removed."""
        state, next_chunk = None, 0
        if (self.path / STATE).is_file():
            with np.load(self.path / STATE, allow_pickle=False) as archive:
                state, next_chunk = archive["run_state"].tobytes(), int(archive["chunk"]) + 1
        keep = {part_name(i) for i in range(next_chunk)}
        for name in TABLES:
            folder = self.path / name
            stale = [p for p in folder.glob("*") if p.name not in keep] if folder.is_dir() else []
            for path in stale:
                log.info("resume: removing %s of a chunk not completed", path)
                path.unlink()
        return Checkpoint(state, next_chunk)


def model_folders(path: Path) -> list[Path]:
    """The model folders to resume at ``path``: itself if it is one, else its model folders."""
    if (path / "run.json").is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if (p / "run.json").is_file()) if path.is_dir() else []
    if not found:
        raise RunFolderError(
            f"--resume: got '{path}'; allowed: a run folder (with run.json) or a scenario "
            "folder holding run folders"
        )
    return found
