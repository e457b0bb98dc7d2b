"""Checks of a score file before any of it is imported into the review store.

One ``DataError`` names the file, the column, what is wrong and the first bad rows (0-based row
numbers of the file; no ids or patient values are echoed). Nothing is written when one fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medssl.errors import DataError

# the widths of the ``cases`` columns (medssl.review.models): PostgreSQL refuses longer text
TEXT_LIMITS: dict[str, int] = {
    "case_id": 256, "patient_id": 256, "domain": 32, "predicted_label": 128, "model_id": 64, "scored_at": 64,
}
REQUIRED_TEXT: tuple[str, ...] = ("case_id", "patient_id", "domain", "model_id")
REQUIRED_NUMBERS: tuple[str, ...] = ("anomaly_score", "anomaly_percentile")
_SHOWN = 5


def _rows(mask: pd.Series | np.ndarray) -> str:
    idx = np.flatnonzero(np.asarray(mask))
    shown = ", ".join(str(i) for i in idx[:_SHOWN])
    return f"row {shown}" if len(idx) == 1 else f"rows {shown}" + (f" and {len(idx) - _SHOWN} more" if len(idx) > _SHOWN else "")


def _fail(path: Path, column: str, problem: str, mask: pd.Series | np.ndarray) -> None:
    raise DataError(f"score file {path}: column {column!r} {problem} ({_rows(mask)}, counting from 0); "
                    "nothing was imported: fix the file or re-run `medssl score`")


def check_scores(df: pd.DataFrame, path: str | Path) -> None:
    """Raise ``DataError`` unless every row of ``df`` (a score file read from ``path``) can be imported
    as it is: at least one row; ids present, unique and short enough; no NUL character in a text
    column; finite numeric scores; a true boolean ``flagged``; ``predicted_proba`` empty or within [0, 1]."""
    path = Path(path)
    if df.empty:
        raise DataError(f"score file {path} has no rows, so there is nothing to review; "
                        "check the `medssl score` run that wrote it")
    for column in REQUIRED_TEXT:
        values = df[column]
        missing = values.isna() | (values.astype(str).str.strip() == "")
        if missing.any():
            _fail(path, column, "is empty", missing)
    for column, limit in TEXT_LIMITS.items():
        too_long = df[column].notna() & (df[column].astype(str).str.len() > limit)
        if too_long.any():
            _fail(path, column, f"is longer than {limit} characters", too_long)
    for column in TEXT_LIMITS:  # PostgreSQL text cannot hold NUL (medssl.review.nul_text); refused on every backend
        nul = df[column].notna() & df[column].astype(str).str.contains("\x00", regex=False)
        if nul.any():
            _fail(path, column, "holds a NUL character (\\x00)", nul)
    duplicated = df["case_id"].astype(str).duplicated(keep=False)
    if duplicated.any():
        _fail(path, "case_id", "repeats a case id (each case must appear once)", duplicated)
    for column in REQUIRED_NUMBERS:
        _check_numbers(df[column], path, column, required=True)
    _check_numbers(df["predicted_proba"], path, "predicted_proba", required=False)
    proba = pd.to_numeric(df["predicted_proba"], errors="coerce")
    outside = proba.notna() & ((proba < 0) | (proba > 1))
    if outside.any():
        _fail(path, "predicted_proba", "is outside [0, 1]", outside)
    _check_flagged(df["flagged"], path)


def _check_numbers(values: pd.Series, path: Path, column: str, required: bool) -> None:
    if values.isna().all() and not required:
        return
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        _fail(path, column, f"must hold numbers, not {values.dtype} values", values.notna())
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers) if required else np.isinf(numbers)
    if bad.any():
        _fail(path, column, "holds NaN or infinite values" if required else "holds infinite values", bad)


def _check_flagged(values: pd.Series, path: Path) -> None:
    """``flagged`` must be true/false: a bool column, or integers 0/1 without gaps. Text such as
    'yes'/'no' is refused (any non-empty string would read as True)."""
    if values.isna().any():
        _fail(path, "flagged", "is empty", values.isna())
    if pd.api.types.is_bool_dtype(values):
        return
    if pd.api.types.is_integer_dtype(values):
        not_01 = ~values.isin([0, 1])
        if not_01.any():
            _fail(path, "flagged", "must be true/false (or 0/1)", not_01)
        return
    not_bool = ~values.map(lambda v: isinstance(v, (bool, np.bool_)))
    if not_bool.any():
        kinds = sorted({type(v).__name__ for v in values[not_bool]})
        _fail(path, "flagged", f"must be true/false, not {'/'.join(kinds)} values such as "
              f"{str(values[not_bool].iloc[0])[:20]!r}", not_bool)
