"""The ingest record: which data files belong to ``DATA_DIR/manifest.parquet``.

Every ingest writes its data files under names carrying a fresh ingest id
(``ehr/grid-<id>.npz``, ``signals/windows-<id>.npy``, ...) and then the manifest, atomically, with
this record in its Parquet key-value metadata (key ``medssl.ingest``)::

    {"version": 1, "ingest_id": "<32 hex>", "kind": "ehr",
     "files": {"grid": {"path": "ehr/grid-<id>.npz", "size": 123}, ...},
     "errors_sha256": "<sha256 of errors.csv>", "schema": {...}}   # schema: transactions only

The manifest is the commit point: until it is replaced, the previous manifest and the previous
files are untouched, so a crash at any point leaves the old DATA_DIR or the new one, never a mix.
Readers open the data files the record names (``recorded_file``) and refuse a missing file or
one whose size differs from the record.

A DATA_DIR written before records existed (no ``medssl.ingest`` key) is read as before, from the
fixed names (``ehr/grid.npz``, ``signals/windows.npy``, ``cache/history.pt``); the EHR reader
still matches the grid's case ids to the manifest, the other readers check row indices only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from medssl.data.manifest import MANIFEST_NAME, RECORD_KEY
from medssl.errors import DataError

RECORD_VERSION = 1
ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
ATTRS_KEY = "medssl_ingest_id"  # DataFrame.attrs key read_manifest sets to the record's ingest id


def read_record(data_dir: str | Path) -> dict[str, Any] | None:
    """The ingest record of ``DATA_DIR/manifest.parquet`` (only its footer is read), or ``None``
    for a DATA_DIR written before records existed (or without a manifest: readers then look for
    the classic file names). A damaged record raises ``DataError``."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise DataError(f"{path} could not be read as Parquet ({exc}); re-run the ingest") from None
    raw = meta.get(RECORD_KEY)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        ok = isinstance(record, dict) and ID_PATTERN.match(str(record.get("ingest_id", ""))) \
            and isinstance(record.get("files", {}), dict)
    except ValueError:
        ok = False
    if not ok:
        raise DataError(f"{path} holds a damaged ingest record; re-run the ingest into {data_dir}")
    return record


def _safe_relative(data_dir: Path, name: str) -> Path:
    """``DATA_DIR/name`` for a relative POSIX path without ``..`` (a crafted record cannot point out)."""
    rel = PurePosixPath(str(name))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise DataError(f"{data_dir / MANIFEST_NAME} names a data file outside the data dir ({name!r}); re-run the ingest")
    return data_dir.joinpath(*rel.parts)


def recorded_file(data_dir: str | Path, role: str, legacy: str | Path, command: str) -> Path:
    """The path of data file ``role`` (``"grid"``, ``"windows"``, ...) of ``data_dir``.

    With a record: the file it names, after checking it exists and has the recorded size
    (``DataError`` otherwise: a missing or replaced file, or a manifest of another kind of
    ingest). Without one (an older DATA_DIR): ``DATA_DIR/legacy``. ``command`` is the ingest to
    suggest (``"medssl ingest ehr SRC"``).
    """
    data_dir = Path(data_dir)
    record = read_record(data_dir)
    if record is None:
        return data_dir / legacy
    entry = record.get("files", {}).get(role)
    manifest = data_dir / MANIFEST_NAME
    if not isinstance(entry, dict) or "path" not in entry:
        raise DataError(
            f"{manifest} was written by `medssl ingest {record.get('kind', '?')}` and has no {role} file; "
            f"run `{command} --out {data_dir}`"
        )
    path = _safe_relative(data_dir, entry["path"])
    if not path.is_file():
        raise DataError(
            f"{path} is missing but {manifest} was written with it (deleted, or another ingest's cleanup?); "
            f"re-run `{command} --out {data_dir}`"
        )
    size = path.stat().st_size
    if "size" in entry and size != int(entry["size"]):
        raise DataError(
            f"{path} has {size} bytes but {manifest} recorded {int(entry['size'])}: it was written by another ingest "
            f"than the manifest or changed since; re-run `{command} --out {data_dir}`"
        )
    return path


def check_same_ingest(manifest: pd.DataFrame, data_dir: str | Path, record: dict[str, Any] | None) -> None:
    """Refuse a manifest DataFrame read from another ingest than ``record`` (the DATA_DIR was
    re-ingested between reading the manifest and opening its data files)."""
    seen = manifest.attrs.get(ATTRS_KEY)
    now = record.get("ingest_id") if record else None
    if seen is not None and seen != now:
        raise DataError(
            f"{Path(data_dir) / MANIFEST_NAME} was replaced by another ingest while this command was reading it; "
            "run the command again"
        )
