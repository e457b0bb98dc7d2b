"""The manifest (one row per case) and the errors file (one row per rejected input).

``DATA_DIR/manifest.parquet`` columns: ``case_id`` (unique str), ``patient_id`` (str), ``domain``,
optional ``label`` and ``split``, plus domain columns. ``DATA_DIR/errors.csv``: ``path, reason``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from medssl.atomic import atomic_write
from medssl.errors import DataError

MANIFEST_NAME = "manifest.parquet"
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


def write_manifest(df: pd.DataFrame, data_dir: str | Path) -> Path:
    """Validate and write ``DATA_DIR/manifest.parquet`` atomically; returns its path."""
    df = validate_manifest(df)
    path = Path(data_dir) / MANIFEST_NAME
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
    return path


def read_manifest(data_dir: str | Path) -> pd.DataFrame:
    """Read ``DATA_DIR/manifest.parquet``; a missing or broken file raises ``DataError``."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(
            f"{path} does not exist; run `medssl ingest ... --out {data_dir}` first to create it"
        )
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise DataError(f"{path} could not be read as Parquet ({exc}); re-run the ingest") from None
    return validate_manifest(df, source=str(path))


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
        frame = self.frame()
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
        return path


def read_errors(data_dir: str | Path) -> pd.DataFrame:
    """Read ``DATA_DIR/errors.csv`` (empty frame if the ingest rejected nothing)."""
    path = Path(data_dir) / ERRORS_NAME
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(ERROR_COLUMNS))
    return pd.read_csv(path, dtype=str, keep_default_na=False)
