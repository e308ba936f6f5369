"""The on-disk cache of built SimBench nets and profiles: entries written so that readers never
see half a file, and verified against a checksum so that a damaged file is rebuilt, not used.

An *entry* is a directory (``nets/<key>/``, ``profiles/<key>/``) holding data files and a
``manifest.json`` written last with every file's size and sha256. A reader trusts an entry
only if its manifest exists and every file matches it: a missing manifest means an
interrupted write, a size or checksum mismatch a truncated or corrupted file (both seen in
practice: a same-size corrupted profile file once changed 11 result tables silently).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: Cache kinds, one subdirectory of the cache root each.
KINDS = ("nets", "profiles")
_HASH_BLOCK = 1 << 22


def cache_dir() -> Path:
    """Root of the on-disk cache (``$MARKET_SIM_CACHE`` or ``~/.cache/market_sim``)."""
    return Path(os.environ.get("MARKET_SIM_CACHE", "~/.cache/market_sim")).expanduser()


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
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


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in blocks (memory bounded)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(entry: Path, files: Iterable[str], format_version: int) -> None:
    """Seal an entry whose ``files`` are written: their sizes and checksums, atomically."""
    listed = {
        name: {"bytes": (entry / name).stat().st_size, "sha256": sha256(entry / name)}
        for name in files
    }
    text = json.dumps({"format": format_version, "files": listed}, indent=1).encode()
    atomic_write(entry / MANIFEST, lambda fh: fh.write(text))


def verified(entry: Path, format_version: int) -> bool:
    """True if ``entry`` is complete and every file matches its manifest.

    No manifest (never written, or an interrupted write) is a silent miss; a manifest that
    does not match is logged as one warning line, because it means a damaged cache.
    """
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as error:
        log.warning("cache %s: unreadable manifest (%s); rebuilding", entry, error)
        return False
    if manifest.get("format") != format_version:
        log.warning(
            "cache %s: format %s, expected %s; rebuilding",
            entry,
            manifest.get("format"),
            format_version,
        )
        return False
    for name, want in manifest.get("files", {}).items():
        path = entry / name
        size = path.stat().st_size if path.exists() else None
        if size != want["bytes"]:
            log.warning(
                "cache %s: %s has %s bytes, manifest says %s; rebuilding",
                entry,
                name,
                size,
                want["bytes"],
            )
            return False
        if sha256(path) != want["sha256"]:
            log.warning("cache %s: %s fails its sha256 checksum; rebuilding", entry, name)
            return False
    return True


@dataclass(frozen=True)
class CacheEntry:
    """One cached item as ``market-sim cache info`` shows it."""

    kind: str
    name: str
    path: Path
    bytes: int
    complete: bool


def entries(root: Path | None = None) -> list[CacheEntry]:
    """Every entry and stray file under the cache root (complete = a manifest exists)."""
    root = root or cache_dir()
    out = []
    for kind in KINDS:
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            size = sum(p.stat().st_size for p in files)
            complete = path.is_dir() and (path / MANIFEST).exists()
            out.append(CacheEntry(kind, path.name, path, size, complete))
    return out


def clear(root: Path | None = None) -> int:
    """Remove every cache kind's folder under the root; returns the bytes freed."""
    root = root or cache_dir()
    freed = sum(e.bytes for e in entries(root))
    for kind in KINDS:
        shutil.rmtree(root / kind, ignore_errors=True)
    return freed
