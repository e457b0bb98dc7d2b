"""Ingest ECG records (WFDB), sktime/UEA .ts series or CSV sensor streams into DATA_DIR.

``ingest_signals(src, out, SignalIngestOptions(format=...))`` writes ``signals/windows-<id>.npy``
(cases x channels x samples), ``manifest.parquet`` (one row per window, split by patient) and
``errors.csv`` (atomically: ``medssl.data.commit``) and returns the counts ``medssl ingest signals``
prints. A run that yields no window fails and leaves DATA_DIR as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medssl.data import ErrorLog, assign_patient_splits
from medssl.data.commit import IngestWriter, no_cases_error
from medssl.data.limits import MAX_SAMPLES, MAX_WINDOW_BYTES, MAX_WINDOW_S
from medssl.data.signals.csv_stream import read_stream_csv
from medssl.data.signals.dataset import write_windows
from medssl.data.signals.ts_format import read_ts
from medssl.data.signals.wfdb_beats import BeatWindow, read_beats
from medssl.data.splits import check_seed, check_split_fractions
from medssl.errors import ConfigError, DataError, ReaderError
from medssl.progress import progress

FORMATS = ("wfdb", "ts", "csv")


def _names(value: str | Sequence[str] | None, drop_empty: bool) -> tuple[str, ...] | None:
    """``"a, b"`` or ``["a", "b"]`` -> ``("a", "b")``; None or ``""`` -> None."""
    if value is None or (isinstance(value, str) and not value):
        return None
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    parts = [p.strip() for p in parts]
    return tuple(p for p in parts if p) if drop_empty else tuple(parts)


@dataclass(frozen=True)
class SignalIngestOptions:
    """Options of ``medssl ingest signals`` (the flags minus SRC and --out), with the CLI's defaults.

    ``format`` (required, as ``--format`` is): ``"wfdb"`` (a folder of WFDB records: one window
    per annotated beat from ``before_s`` to ``after_s`` seconds around it; ``records`` picks
    record names, ``max_records`` caps their number, ``leads`` keeps the first N leads), ``"ts"``
    (a .ts file or folder of them; ``length`` resamples every series) or ``"csv"`` (a CSV file or
    folder; ``time_col`` and ``window`` required, ``stride`` defaults to ``window``, ``channels``
    picks columns, ``patient_col``/``label_col`` optional). ``val_fraction``/``test_fraction``/``seed``:
    the patient-level split.
    ``records`` and ``channels`` are tuples of names; a comma-separated string (as on the command
    line) or any sequence is accepted and stored as a tuple.
    Bad values raise ``DataError`` (an unknown format ``ConfigError``).
    """

    format: str
    records: tuple[str, ...] | None = None
    max_records: int | None = None
    before_s: float = 0.25
    after_s: float = 0.45
    leads: int | None = None
    length: int | None = None
    time_col: str | None = None
    channels: tuple[str, ...] | None = None
    patient_col: str | None = None
    label_col: str | None = None
    window: int | None = None
    stride: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"unknown signal format {self.format!r}; use one of {', '.join(FORMATS)}")
        check_split_fractions(self.val_fraction, self.test_fraction)
        check_seed(self.seed)
        object.__setattr__(self, "records", _names(self.records, drop_empty=True))
        object.__setattr__(self, "channels", _names(self.channels, drop_empty=False))
        if self.format == "csv":
            if not self.time_col or not self.window:
                raise DataError("--format csv needs --time-col (the time column) and --window (rows per window)")
            if self.window < 2 or (self.stride is not None and self.stride < 1):
                raise DataError("--window must be at least 2 and --stride at least 1")
        self._check_numbers()

    def _check_numbers(self) -> None:
        """Range checks of the numeric options (``DataError`` naming the flag)."""
        for flag, value in (("--before-s", self.before_s), ("--after-s", self.after_s)):
            if not isinstance(value, (int, float)) or not np.isfinite(value) or not 0 <= value <= MAX_WINDOW_S:
                raise DataError(f"{flag} {value} must be a number of seconds from 0 to {MAX_WINDOW_S:g}")
        if self.before_s + self.after_s <= 0:
            raise DataError("--before-s plus --after-s must be above 0 seconds: a window needs samples")
        for flag, value, low in (("--max-records", self.max_records, 1), ("--leads", self.leads, 1),
                                 ("--length", self.length, 2), ("--window", self.window, 2), ("--stride", self.stride, 1)):
            if value is not None and not low <= value <= MAX_SAMPLES:
                raise DataError(f"{flag} {value} must be a whole number from {low} to {MAX_SAMPLES}")


def _wfdb(src: Path, options: SignalIngestOptions, errors: ErrorLog) -> tuple[list[np.ndarray], list[pd.DataFrame]]:
    if not src.is_dir():
        raise DataError(f"{src} is not a folder; pass the folder holding the .hea/.dat/.atr files")
    names = sorted(p.stem for p in src.glob("*.hea"))
    if options.records is not None:
        wanted = list(options.records)
        unknown = [r for r in wanted if r not in names]
        if unknown:
            raise DataError(f"record(s) {unknown} have no .hea file in {src}; known: {', '.join(names[:30])}")
        names = wanted
    names = names[: options.max_records]
    if not names:
        raise DataError(f"{src} holds no .hea record headers")
    geometry = BeatWindow(options.before_s, options.after_s)
    windows, rows, fs0, total = [], [], None, 0
    for name in progress(names, desc="reading records", unit="record"):
        got = read_beats(src / name, geometry, errors, n_leads=options.leads)
        if got is None:
            continue
        w, r, fs = got
        if windows and (fs != fs0 or w.shape[1:] != windows[0].shape[1:]):
            errors.add(src / f"{name}.hea", f"{w.shape[1]} leads at {fs:g} Hz differ from the first record's "
                       f"{windows[0].shape[1]} leads at {fs0:g} Hz; use --leads or ingest it separately", count=1)
            continue
        if w.shape[2] < 2:
            raise DataError(f"--before-s {options.before_s:g} and --after-s {options.after_s:g} give windows of "
                            f"{w.shape[2]} sample(s) at {fs:g} Hz; a window needs at least 2: widen them")
        total += w.nbytes
        _check_total(total)
        fs0 = fs
        windows.append(w)
        rows.append(r.assign(fs=fs))
    return windows, rows


def _check_total(nbytes: int) -> None:
    if nbytes > MAX_WINDOW_BYTES:
        raise DataError(f"the windows would need more than {MAX_WINDOW_BYTES / 2**30:.0f} GiB; narrow --before-s/--after-s "
                        "(wfdb) or --window, raise --stride, or read fewer records (--records, --max-records)")


def _ts(src: Path, options: SignalIngestOptions, errors: ErrorLog) -> tuple[list[np.ndarray], list[pd.DataFrame]]:
    files = sorted(src.glob("*.ts")) if src.is_dir() else [src]
    if not files:
        raise DataError(f"{src} holds no .ts files")
    windows, rows = [], []
    for path in files:
        try:
            series, labels, _ = read_ts(path, options.length)
        except ReaderError as exc:
            errors.add(exc.path, exc.reason, count=1)
            continue
        if windows and series.shape[1:] != windows[0].shape[1:]:
            errors.add(path, f"series shape {series.shape[1:]} differs from {windows[0].shape[1:]}; pass --length", count=1)
            continue
        ok = np.isfinite(series).all(axis=(1, 2))
        if not ok.all():
            errors.add(path, "series with missing values (?) or infinite values skipped", count=int((~ok).sum()))
        ids = [f"{path.stem}:{i}" for i in range(len(series))]
        frame = pd.DataFrame({"case_id": ids, "patient_id": ids, "label": labels, "source_file": path.name})
        windows.append(series[ok])
        rows.append(frame[ok].reset_index(drop=True))
    return windows, rows


def _csv(src: Path, options: SignalIngestOptions, errors: ErrorLog) -> tuple[list[np.ndarray], list[pd.DataFrame]]:
    # SignalIngestOptions made sure that csv has time_col and a window of at least 2
    files = sorted(src.glob("*.csv")) if src.is_dir() else [src]
    channels = list(options.channels) if options.channels is not None else None
    windows, rows = [], []
    for path in progress(files, desc="reading streams", unit="file"):
        try:
            w, r = read_stream_csv(path, options.time_col, options.window, options.stride or options.window, errors,
                                   channels=channels, patient_col=options.patient_col, label_col=options.label_col)
        except ReaderError as exc:
            errors.add(exc.path, exc.reason, count=1)
            continue
        if len(w) and windows and w.shape[1:] != windows[0].shape[1:]:
            errors.add(path, f"{w.shape[1]} channels differ from the first file's {windows[0].shape[1]}; use --channels", count=1)
            continue
        if len(w):
            windows.append(w)
            rows.append(r)
    return windows, rows


def ingest_signals(src: str | Path, out: str | Path, options: SignalIngestOptions | None = None) -> dict[str, Any]:
    """Cut ``src`` into windows in the data dir ``out``; return the summary counts.

    The summary: ``cases`` (windows), ``channels``, ``samples`` (per window), ``patients``,
    ``splits`` (split -> windows) and ``errors`` (rows of errors.csv). ``options`` is required in
    practice: there is no default format, so ``None`` raises ``ConfigError``.
    """
    if options is None:
        raise ConfigError(f"ingest_signals needs options=SignalIngestOptions(format=...) with format one of {', '.join(FORMATS)}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise DataError(f"{src} does not exist; pass the folder or file to ingest")
    errors = ErrorLog()
    read = {"wfdb": _wfdb, "ts": _ts, "csv": _csv}[options.format]
    windows, rows = read(src, options, errors)
    if not windows or sum(len(w) for w in windows) == 0:
        raise no_cases_error(out, errors, f"no cases could be read from {src}")
    _check_total(sum(w.nbytes for w in windows))
    manifest = pd.concat(rows, ignore_index=True)
    manifest["label"] = manifest["label"].astype(object).where(manifest["label"].notna(), None)
    manifest["split"] = assign_patient_splits(manifest, val_fraction=options.val_fraction,
                                              test_fraction=options.test_fraction, seed=options.seed)
    manifest["domain"] = "signals"
    manifest["row"] = np.arange(len(manifest))
    manifest["source_format"] = options.format
    data = np.concatenate(windows)
    with IngestWriter(out, "signals") as writer:
        write_windows(writer.path("windows", "signals/windows.npy"), data)
        writer.commit(manifest, errors)
    return {
        "cases": len(manifest),
        "channels": int(data.shape[1]),
        "samples": int(data.shape[2]),
        "patients": int(manifest["patient_id"].nunique()),
        "splits": manifest["split"].value_counts().to_dict(),
        "errors": len(errors),
    }
