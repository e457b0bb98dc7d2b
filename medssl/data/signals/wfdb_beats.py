"""WFDB records (MIT-BIH style) -> one fixed window per annotated beat, or fixed windows.

A beat at sample ``s`` gives the window ``signal[s - before : s + after]`` of every lead
(default 0.25 s before and 0.45 s after: 90 + 162 = 252 samples at 360 Hz). Beats whose
window would run past either end of the record are dropped and counted in errors.csv.
case_id = ``record:sample``, patient_id = record, label = AAMI class of the beat symbol; each beat
also gets its RR-interval side features (``medssl.data.signals.rr_features``: ``rr_prev``,
``rr_next``, ``rr_local``, ``rr_record`` and ratios) from the times of all the record's beats.
A record with no ``.atr`` file is cut into fixed windows (case_id = ``record:start``, no label).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from medssl.data.manifest import ErrorLog
from medssl.data.signals.aami import aami_class
from medssl.data.signals.rr_features import rr_features


@dataclass(frozen=True)
class BeatWindow:
    """Window geometry in seconds; ``samples(fs)`` gives (before, after) in samples."""

    before_s: float = 0.25
    after_s: float = 0.45

    def samples(self, fs: float) -> tuple[int, int]:
        return int(round(self.before_s * fs)), int(round(self.after_s * fs))


def read_beats(
    record_path: Path, geometry: BeatWindow, errors: ErrorLog, n_leads: int | None = None,
    annotator: str = "atr",
) -> tuple[np.ndarray, pd.DataFrame, float] | None:
    """Windows ``(n, C, before + after)`` float32, their manifest rows and the sampling rate.

    ``record_path`` is the record without extension. Returns None (and adds an errors.csv row)
    when the record cannot be read. Without an annotation file the record is cut into fixed,
    non-overlapping windows of the same length.
    """
    name = record_path.name
    try:
        record = wfdb.rdrecord(str(record_path), channels=list(range(n_leads)) if n_leads else None)
    except Exception as exc:  # wfdb raises FileNotFoundError, ValueError, IndexError... per damage
        errors.add(f"{record_path}.hea", f"record could not be read; its .dat file may be missing or truncated "
                   f"({type(exc).__name__}: {exc})", count=1)
        return None
    signal = record.p_signal
    names = list(record.sig_name or [])
    fs = record.fs
    if not isinstance(fs, (int, float)) or not np.isfinite(fs) or fs <= 0 or not all(isinstance(n, str) for n in names):
        errors.add(f"{record_path}.hea", "header is incomplete (sampling rate or signal names missing or invalid); "
                   "copy the record again", count=1)
        return None
    if signal is None or signal.ndim != 2 or signal.shape[0] == 0:
        errors.add(f"{record_path}.hea", "record has no samples", count=1)
        return None
    if n_leads and signal.shape[1] < n_leads:
        errors.add(f"{record_path}.hea", f"record has {signal.shape[1]} leads, --leads asks for {n_leads}", count=1)
        return None
    if np.isnan(signal).any():  # wfdb marks invalid samples as NaN; keep windows finite
        signal = pd.DataFrame(signal).interpolate(limit_direction="both").fillna(0.0).to_numpy()
    before, after = geometry.samples(record.fs)
    length = before + after
    leads = ",".join(record.sig_name)
    if not record_path.with_suffix(f".{annotator}").is_file():
        starts = np.arange(0, signal.shape[0] - length + 1, length)
        rows = pd.DataFrame({"case_id": [f"{name}:{s}" for s in starts], "patient_id": name,
                             "label": None, "symbol": None, "sample": starts})
    else:
        try:
            ann = wfdb.rdann(str(record_path), annotator)
        except Exception as exc:
            errors.add(f"{record_path}.{annotator}", f"annotations could not be read ({type(exc).__name__}: {exc})", count=1)
            return None
        if not _has_end_marker(record_path.with_suffix(f".{annotator}")):
            errors.add(
                f"{record_path}.{annotator}",
                "annotation file is truncated (it lacks the WFDB end-of-file marker, two zero bytes), so "
                "beats after the cut would be missing; record skipped. Copy the file again",
                count=1,
            )
            return None
        symbols = np.asarray(ann.symbol, dtype=object)
        labels = np.asarray([aami_class(s) for s in symbols], dtype=object)
        is_beat = labels != None  # noqa: E711  (elementwise test on an object array)
        samples = np.asarray(ann.sample, dtype=np.int64)
        inside = (samples - before >= 0) & (samples + after <= signal.shape[0])
        n_edge = int((is_beat & ~inside).sum())
        if n_edge:
            errors.add(f"{record_path}.{annotator}", "beat too close to the record edge for its window; beat dropped", count=n_edge)
        keep = is_beat & inside
        starts = samples[keep] - before
        rows = pd.DataFrame({"case_id": [f"{name}:{s}" for s in samples[keep]], "patient_id": name,
                             "label": labels[keep], "symbol": symbols[keep], "sample": samples[keep]})
        rows = pd.concat([rows, rr_features(samples[is_beat], samples[keep], float(record.fs))], axis=1)
    index = starts[:, None] + np.arange(length)[None, :]
    windows = signal[index].transpose(0, 2, 1).astype(np.float32)  # (n, C, length)
    rows["record"] = name
    rows["leads"] = leads
    rows["source"] = str(record_path.resolve())  # the record (no extension): the case page reads its rhythm strip
    return windows, rows, float(record.fs)


def _has_end_marker(path: Path) -> bool:
    """A complete WFDB annotation file ends with the zero annotation (bytes ``00 00``)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            if fh.tell() < 2:
                return False
            fh.seek(-2, 2)
            return fh.read(2) == b"\0\0"
    except OSError:
        return False
