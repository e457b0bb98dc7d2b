"""Atomic file writes: write to a temp file in the same folder, then rename over the target.

A crash mid-write leaves the old file (or none), never a half-written one. Temporary files are
hidden (``.<name>.<random>.tmp``) and removed when the write fails. The file gets the permissions
a plain ``open()`` would give it (0666 less the process umask), not the temporary file's 0600, so a
manifest or score file one account writes stays readable to the app another account runs.
``write_json`` is the one JSON writer for reports, results and cache notes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], Any], mode: int | None = None) -> Path:
    """Call ``write(tmp_path)`` then ``os.replace`` it onto ``path``; returns ``path``.

    ``write`` gets a path ending in ``.tmp``: open it yourself (``np.save`` given a name would
    append ``.npy``; give it the open file instead). ``mode``: the file's permissions (default:
    0666 less the umask, as ``open()`` gives).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write)


def write_json(obj: Any, path: str | Path, allow_nan: bool = False) -> Path:
    """Write ``obj`` as indented JSON (and a final newline) atomically; returns ``path``.

    NaN and infinity are refused unless ``allow_nan`` (undefined metrics are written as null).
    """
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, allow_nan=allow_nan)
            fh.write("\n")

    return atomic_write(path, write)


def sync_file(path: str | Path) -> None:
    """Flush ``path``'s contents to disk (``fsync``), so a rename that follows never exposes a
    file whose data a power loss could still drop."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path: str | Path) -> None:
    """Flush the entries of folder ``path`` (renames, new files) to disk; a no-op where the
    platform cannot open folders."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
