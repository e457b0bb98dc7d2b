"""CSV sensor streams (one row per time point, one column per channel) -> fixed windows.

Rows are grouped by ``--patient-col`` (one stream per patient/device; the whole file when
absent), sorted by ``--time-col``, and cut into windows of ``window`` rows every ``stride`` rows.
Rows with an unparseable time or a non-numeric channel value are dropped and counted.
case_id = ``file:patient:first_row``; label = the most frequent ``--label-col`` value in the window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medssl.data.ehr.long_csv import parse_times
from medssl.data.manifest import ErrorLog
from medssl.errors import ReaderError


def read_stream_csv(
    path: Path, time_col: str, window: int, stride: int, errors: ErrorLog,
    channels: list[str] | None = None, patient_col: str | None = None, label_col: str | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Windows ``(n, C, window)`` float32 and their manifest rows. Raises ``ReaderError`` for a bad file."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ReaderError(str(path), "empty file (expected a header row and one row per time point)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ReaderError(str(path), f"not a readable CSV ({str(exc).splitlines()[0]})") from None
    named = {"--time-col": time_col, "--patient-col": patient_col, "--label-col": label_col}
    missing = [f"{flag} {col!r}" for flag, col in named.items() if col and col not in raw.columns]
    missing += [f"--channels {c!r}" for c in channels or [] if c not in raw.columns]
    if missing:
        raise ReaderError(str(path), f"no column(s) {', '.join(missing)}; columns are {list(raw.columns)}")
    if raw.empty:
        raise ReaderError(str(path), "header but no rows")
    if channels is None:
        others = [c for c in raw.columns if c not in (time_col, patient_col, label_col)]
        channels = [c for c in others if pd.to_numeric(raw[c].str.strip(), errors="coerce").notna().mean() > 0.5]
        if not channels:
            raise ReaderError(str(path), "no numeric channel columns found; name them with --channels")
    patients = raw[patient_col].astype(str) if patient_col else pd.Series(path.stem, index=raw.index)
    times = parse_times(raw[time_col], patients)
    values = raw[channels].apply(lambda s: pd.to_numeric(s.str.strip(), errors="coerce"))
    no_patient = (patients.str.strip() == "") if patient_col else pd.Series(False, index=raw.index)
    if no_patient.any():
        errors.add(path, f"empty id in --patient-col {patient_col!r}; row dropped", count=int(no_patient.sum()))
    times = times.where(~no_patient)
    bad_time = (times.isna() | ~np.isfinite(times.fillna(0))) & ~no_patient
    with np.errstate(over="ignore"):  # beyond float32 (the windows' type) becomes inf: refused like inf
        finite = np.isfinite(values.to_numpy(dtype=np.float64, na_value=np.nan).astype(np.float32))
    bad_value = ~finite.all(axis=1) & ~bad_time & ~no_patient
    if bad_time.any():
        errors.add(path, "unknown time format (expected numbers, HH:MM or ISO dates); row dropped", count=int(bad_time.sum()))
    if bad_value.any():
        errors.add(path, "channel value is not a number, or not finite (empty, text, nan or inf); row dropped", count=int(bad_value.sum()))
    good = ~(bad_time | bad_value | no_patient)
    frame = pd.DataFrame({"_patient": patients, "_time": times}).join(values)[good]
    if label_col:
        frame["_label"] = raw.loc[good, label_col].replace("", None)
    windows, rows = [], []
    for patient, stream in frame.sort_values(["_patient", "_time"], kind="stable").groupby("_patient", sort=True):
        data = stream[channels].to_numpy(np.float32).T  # (C, n_rows)
        starts = np.arange(0, data.shape[1] - window + 1, stride)
        labels = _window_labels(stream["_label"], starts, window) if label_col else [None] * len(starts)
        for start, label in zip(starts.tolist(), labels):
            windows.append(data[:, start:start + window])
            rows.append({"case_id": f"{path.stem}:{patient}:{start}", "patient_id": str(patient),
                         "label": label, "start": start, "channels": ",".join(channels)})
        if data.shape[1] < window:
            errors.add(path, f"a stream has {data.shape[1]} valid rows, fewer than --window {window}; skipped", count=1)
    if not windows:
        return np.zeros((0, len(channels), window), np.float32), pd.DataFrame(rows)
    return np.stack(windows), pd.DataFrame(rows)


def _window_labels(labels: pd.Series, starts: np.ndarray, window: int) -> list[str | None]:
    """The most frequent non-missing value of ``labels[start:start + window]`` per start (None if
    all missing); ties go to the value seen first in the window (what ``value_counts`` gives).

    All windows at once, one class at a time (memory stays O(rows)): the class's rows in a window
    and its first one there come from ``searchsorted`` on the sorted rows holding it.
    """
    codes, classes = pd.factorize(labels)  # missing -> -1
    best = np.full(len(starts), -1)
    best_count = np.zeros(len(starts), dtype=np.int64)
    best_first = np.zeros(len(starts), dtype=np.int64)
    for k in range(len(classes)):
        rows_k = np.flatnonzero(codes == k)  # never empty: every class occurs
        lo = np.searchsorted(rows_k, starts)
        count = np.searchsorted(rows_k, starts + window) - lo
        first = rows_k[np.minimum(lo, len(rows_k) - 1)]  # (count is 0 when lo is past the end)
        better = (count > best_count) | ((count == best_count) & (count > 0) & (first < best_first))
        best = np.where(better, k, best)
        best_count = np.where(better, count, best_count)
        best_first = np.where(better, first, best_first)
    names = [str(c) for c in classes]
    return [names[k] if k >= 0 else None for k in best.tolist()]
