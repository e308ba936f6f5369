"""The on-disk cache of built SimBench nets and profiles, written so that readers never see
half a file (parallel runs and interrupted writes share one cache)."""

from __future__ import annotations

import os
from pathlib import Path

from market_sim.files import atomic_write

__all__ = ["atomic_write", "cache_dir"]


def cache_dir() -> Path:
    """Root of the on-disk cache (``$MARKET_SIM_CACHE`` or ``~/.cache/market_sim``)."""
    return Path(os.environ.get("MARKET_SIM_CACHE", "~/.cache/market_sim")).expanduser()
