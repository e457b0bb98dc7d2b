"""Writing one ingest into DATA_DIR so that a crash leaves the old DATA_DIR or the new one.

    with IngestWriter(out, "ehr") as w:
        grid.save(w.path("grid", "ehr/grid.npz"), w.ingest_id)    # -> out/ehr/grid-<id>.npz
        w.commit(manifest, errors)

Order: (1) data files under names carrying a fresh ingest id, next to (never over) the previous
ingest's files, flushed to disk; (2) ``manifest.parquet`` replaced atomically, carrying the ingest
record that names them (``medssl.data.record``): this is the commit point; (3) ``errors.csv``
and other small sidecars (``schema.json``), whose content the record already holds or hashes;
(4) the previous ingest's data files, leftovers of killed ingests and stale temporary files are
deleted. A failure before (2) deletes what this ingest wrote (``abort``) and leaves DATA_DIR as
it was. One ingest per DATA_DIR at a time: a second one is refused while the first holds the lock.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

import pandas as pd

from medssl.atomic import atomic_write, sync_dir, sync_file
from medssl.data.manifest import ERRORS_NAME, MANIFEST_NAME, ErrorLog, errors_bytes, write_manifest
from medssl.data.record import RECORD_VERSION
from medssl.errors import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".ingest.lock"
_ID = r"(-[0-9a-f]{32})?"
# Data files any ingest may have left (this layout and the one before records): deleted once the
# manifest no longer names them.
DATA_FILES: dict[str, re.Pattern[str]] = {
    "ehr": re.compile(rf"^(grid{_ID}\.npz|events{_ID}\.parquet)$"),
    "signals": re.compile(rf"^windows{_ID}\.npy$"),
    "transactions": re.compile(r"^history-[0-9a-f]{32}\.pt$"),
    "cache": re.compile(r"^history\.pt$"),
}
SIDECARS = ("schema.json",)  # small files written after the manifest; removed when an ingest writes none
_STALE_TMP = re.compile(r"^\.(manifest\.parquet|errors\.csv|schema\.json)\..*\.tmp$")


class IngestWriter:
    """Stages the files of one ingest into ``out`` and commits them with the manifest (see module doc)."""

    def __init__(self, out: str | Path, kind: str) -> None:
        self.out = Path(out)
        self.kind = kind
        self.ingest_id = uuid.uuid4().hex
        self._files: dict[str, str] = {}
        self._created_dirs: list[Path] = []
        self._lock_fd: int | None = None
        self._lock_created = False
        self.committed = False

    def __enter__(self) -> "IngestWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self.committed:
            self.abort()
        self._unlock()

    def _mkdirs(self, folder: Path) -> None:
        missing = []
        for d in [folder, *folder.parents]:
            if d.exists():
                break
            missing.append(d)
        for d in reversed(missing):
            d.mkdir()
            self._created_dirs.append(d)

    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        self._mkdirs(self.out)
        self._lock_created = not (self.out / LOCK_NAME).exists()
        fd = os.open(self.out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise DataError(f"another `medssl ingest` is writing into {self.out}; wait for it to finish") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def path(self, role: str, legacy: str) -> Path:
        """Where to write data file ``role`` whose classic name is ``legacy`` (``"ehr/grid.npz"``):
        ``out/ehr/grid-<ingest id>.npz``. Creates the folder; ``abort`` deletes the file again."""
        self._lock()
        rel = PurePosixPath(legacy)
        name = rel.parent / f"{rel.stem}-{self.ingest_id}{rel.suffix}"
        path = self.out.joinpath(*name.parts)
        self._mkdirs(path.parent)
        self._files[role] = name.as_posix()
        return path

    def commit(self, manifest: pd.DataFrame, errors: ErrorLog, extra: dict[str, Any] | None = None,
               sidecars: dict[str, bytes] | None = None) -> Path:
        """Write the manifest (the commit point), then errors.csv and ``sidecars``, then clean up.

        ``extra``: more record keys (e.g. ``schema``). Returns the manifest's path.
        """
        self._lock()
        files = {}
        for role, rel in self._files.items():
            path = self.out / rel
            sync_file(path)
            files[role] = {"path": rel, "size": path.stat().st_size}
        for folder in {(self.out / rel).parent for rel in self._files.values()}:
            sync_dir(folder)
        errors_data = errors_bytes(errors)
        record = {"version": RECORD_VERSION, "ingest_id": self.ingest_id, "kind": self.kind, "files": files,
                  "errors_sha256": hashlib.sha256(errors_data).hexdigest(), **(extra or {})}
        path = write_manifest(manifest, self.out, record)
        self.committed = True
        sync_dir(self.out)
        _write(self.out / ERRORS_NAME, errors_data)
        for name, data in (sidecars or {}).items():
            _write(self.out / name, data)
        remove_stale(self.out, keep=set(self._files.values()), sidecars=set(sidecars or {}))
        return path

    def abort(self) -> None:
        """Delete what this ingest wrote (data files, folders it created); DATA_DIR is as before."""
        for rel in self._files.values():
            try:
                (self.out / rel).unlink()
            except FileNotFoundError:
                pass
        if self._lock_created:
            (self.out / LOCK_NAME).unlink(missing_ok=True)
            self._lock_created = False
        for d in reversed(self._created_dirs):
            try:
                d.rmdir()
            except OSError:
                pass  # not empty: something else lives there
        self._files.clear()
        self._created_dirs.clear()


def _write(path: Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write(path, write)


def remove_stale(out: Path, keep: set[str], sidecars: set[str]) -> None:
    """Delete data files of earlier ingests (``DATA_FILES`` not in ``keep``), sidecars this ingest
    did not write, and temporary files of killed writes; empty data folders go too."""
    for folder, pattern in DATA_FILES.items():
        d = out / folder
        if not d.is_dir():
            continue
        for f in d.iterdir():
            if pattern.match(f.name) and f"{folder}/{f.name}" not in keep:
                f.unlink(missing_ok=True)
        if folder != "cache":
            try:
                d.rmdir()  # only when empty
            except OSError:
                pass
    for name in SIDECARS:
        if name not in sidecars:
            (out / name).unlink(missing_ok=True)
    for f in out.iterdir():
        if _STALE_TMP.match(f.name):
            f.unlink(missing_ok=True)


def no_cases_error(out: str | Path, errors: ErrorLog, message: str) -> DataError:
    """The error of an ingest that read nothing usable; DATA_DIR keeps its previous ingest.

    A fresh DATA_DIR (no manifest yet) gets the errors.csv that explains it; an existing one is
    left untouched, so the first reasons go into the message instead.
    """
    out = Path(out)
    if not (out / MANIFEST_NAME).exists():
        out.mkdir(parents=True, exist_ok=True)
        path = errors.write(out)
        return DataError(f"{message}; the reasons are in {path}")
    if len(errors):
        first = errors.rows[0]
        return DataError(f"{message}; {len(errors)} problem(s), the first: {first['path']}: {first['reason']} "
                         f"({out} was left unchanged)")
    return DataError(f"{message} ({out} was left unchanged)")
