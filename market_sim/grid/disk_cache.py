"""The on-disk cache of built SimBench nets and profiles, written so that readers never see
half a file (parallel runs and interrupted writes share one cache)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """Root of the on-disk cache (``$MARKET_SIM_CACHE`` or ``~/.cache/market_sim``)."""
    return Path(os.environ.get("MARKET_SIM_CACHE", "~/.cache/market_sim")).expanduser()


def atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file so that parallel runs never read half a cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
