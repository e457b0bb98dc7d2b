"""The manifest (one row per case) and the errors file (one row per rejected input).

``DATA_DIR/manifest.parquet`` columns: ``case_id`` (unique str), ``patient_id`` (str), ``domain``,
optional ``label`` and ``split``, plus domain columns. ``DATA_DIR/errors.csv``: ``path, reason``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medssl.atomic import atomic_write, sync_file
from medssl.errors import DataError

MANIFEST_NAME = "manifest.parquet"
RECORD_KEY = b"medssl.ingest"  # Parquet key-value metadata: the ingest record (medssl.data.record)
ERRORS_NAME = "errors.csv"
REQUIRED_COLUMNS = ("case_id", "patient_id", "domain")
ERROR_COLUMNS = ("path", "reason")


def validate_manifest(df: pd.DataFrame, source: str = "manifest") -> pd.DataFrame:
    """Check the DESIGN.md contract and return ``df`` with id columns as ``str``.

    Raises ``DataError`` naming the problem (missing column, duplicate or empty ids).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source} lacks required column(s) {missing}; a manifest needs {list(REQUIRED_COLUMNS)}")
    df = df.copy()
    for col in ("case_id", "patient_id"):
        if df[col].isna().any():
            raise DataError(f"{source} has {int(df[col].isna().sum())} row(s) with an empty {col}")
        df[col] = df[col].astype(str)
    dup = df["case_id"].duplicated(keep=False)
    if dup.any():
        examples = df.loc[dup, "case_id"].unique()[:3].tolist()
        raise DataError(f"{source} has duplicate case_id values, e.g. {examples}; case ids must be unique")
    return df.reset_index(drop=True)


def write_manifest(df: pd.DataFrame, data_dir: str | Path, record: dict[str, Any] | None = None) -> Path:
    """Validate and write ``DATA_DIR/manifest.parquet`` atomically (flushed to disk before the
    rename); returns its path. ``record`` (see ``medssl.data.record``) goes into the file's
    key-value metadata; ingests pass one. Without one, the record of the manifest being replaced
    is kept (an edited manifest still names its data files); a new hand-made manifest has none."""
    df = validate_manifest(df)
    df.attrs = {}
    path = Path(data_dir) / MANIFEST_NAME
    raw = json.dumps(record).encode() if record is not None else _current_record(path)

    def write(tmp: str) -> None:
        table = pa.Table.from_pandas(df, preserve_index=False)
        if raw is not None:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), RECORD_KEY: raw})
        pq.write_table(table, tmp)
        sync_file(tmp)

    atomic_write(path, write)
    return path


def _current_record(path: Path) -> bytes | None:
    """The raw ingest record of the manifest at ``path`` (``None`` when there is none or no file)."""
    try:
        return (pq.read_schema(path).metadata or {}).get(RECORD_KEY) if path.is_file() else None
    except Exception:  # a damaged manifest being replaced carries nothing over
        return None


def read_manifest(data_dir: str | Path) -> pd.DataFrame:
    """Read ``DATA_DIR/manifest.parquet``; a missing or broken file raises ``DataError``."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(
            f"{path} does not exist; run `medssl ingest ... --out {data_dir}` first to create it"
        )
    try:
        with open(path, "rb") as fh:  # one open file: the frame and its record come from the same manifest
            df = pd.read_parquet(fh)
            fh.seek(0)
            meta = pq.read_schema(fh).metadata or {}
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise DataError(f"{path} could not be read as Parquet ({exc}); re-run the ingest") from None
    df = validate_manifest(df, source=str(path))
    df.attrs = {}
    raw = meta.get(RECORD_KEY)
    if raw is not None:
        try:
            df.attrs["medssl_ingest_id"] = str(json.loads(raw)["ingest_id"])  # see medssl.data.record
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path} holds a damaged ingest record; re-run the ingest into {data_dir}") from None
    return df


class ErrorLog:
    """Collects rejected inputs and writes them to ``errors.csv`` (``path, reason`` + extras)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, path: str | Path, reason: str, **extra: Any) -> None:
        """Record that ``path`` was rejected because of ``reason`` (one short line)."""
        self.rows.append({"path": str(path), "reason": " ".join(str(reason).split()), **extra})

    def __len__(self) -> int:
        return len(self.rows)

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with at least the ``path`` and ``reason`` columns."""
        df = pd.DataFrame(self.rows)
        for col in ERROR_COLUMNS:
            if col not in df.columns:
                df[col] = pd.Series(dtype=str)
        return df[list(ERROR_COLUMNS) + [c for c in df.columns if c not in ERROR_COLUMNS]]

    def write(self, data_dir: str | Path) -> Path:
        """Write ``DATA_DIR/errors.csv`` (always, even when empty, so a run's outcome is explicit)."""
        path = Path(data_dir) / ERRORS_NAME
        data = errors_bytes(self)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                fh.write(data)

        atomic_write(path, write)
        return path


def errors_bytes(errors: ErrorLog) -> bytes:
    """The bytes ``ErrorLog.write`` puts in errors.csv (their sha256 goes into the ingest record)."""
    return errors.frame().to_csv(index=False).encode()


def read_errors(data_dir: str | Path) -> pd.DataFrame:
    """Read ``DATA_DIR/errors.csv`` (empty frame if the ingest rejected nothing).

    When the manifest's ingest record holds the sha256 of its errors.csv, a file that differs
    (left from another ingest: one interrupted between the manifest and errors.csv) raises
    ``DataError``.
    """
    path = Path(data_dir) / ERRORS_NAME
    manifest = Path(data_dir) / MANIFEST_NAME
    expected = None
    if manifest.is_file():
        try:
            raw = (pq.read_schema(manifest).metadata or {}).get(RECORD_KEY)
            expected = json.loads(raw).get("errors_sha256") if raw is not None else None
        except Exception:  # a damaged manifest is reported by read_manifest, not here
            expected = None
    if expected is not None:
        got = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        if got != expected:
            raise DataError(
                f"{path} was written by another ingest than {manifest} (an interrupted ingest?); re-run the ingest"
            )
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(ERROR_COLUMNS))
    return pd.read_csv(path, dtype=str, keep_default_na=False)
