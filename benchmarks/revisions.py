"""Run the project's code of another git revision beside the working tree's, in one session.

Used by the before/after checks (:mod:`same_tables` for results, :mod:`compare_speed` for
speed): a revision is checked out once into a detached worktree and imported first on
``PYTHONPATH``, so both trees run in the same environment, one after the other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(revision: str, where: Path) -> Path:
    """A worktree of ``revision`` at ``where`` (reused if it is already there)."""
    if not where.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(where), revision], cwd=ROOT, check=True
        )
    return where


def run_python(code: Path, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``python ARGS`` with the package of ``code`` imported first, from that folder."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    return subprocess.run([sys.executable, *args], cwd=code, env=env, check=True, **kwargs)
