"""``medssl ingest signals SRC --out DATA_DIR``: ECG records, .ts series or CSV streams -> windows."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medssl.data import ErrorLog, assign_patient_splits, write_manifest
from medssl.data.signals.csv_stream import read_stream_csv
from medssl.data.signals.dataset import save_windows
from medssl.data.signals.ts_format import read_ts
from medssl.data.signals.wfdb_beats import BeatWindow, read_beats
from medssl.errors import DataError, ReaderError
from medssl.progress import progress

log = logging.getLogger(__name__)
FORMATS = ("wfdb", "ts", "csv")

HELP = """\
Cut physiological or sensor signals into fixed windows: DATA_DIR/signals/windows.npy (cases x
channels x samples), manifest.parquet (one row per window, with a train/val/test split drawn by
patient) and errors.csv (unreadable files, dropped beats or rows, with counts).

formats:
  wfdb  a folder of WFDB records (.hea + .dat, e.g. MIT-BIH). One case per annotated beat
        (.atr): a window from --before-s to --after-s around it, label = AAMI class N/S/V/F/Q,
        patient = record. Records without .atr are cut into fixed windows of the same length.
  ts    a sktime/UEA .ts file or a folder of them (e.g. BasicMotions); one case per series
  csv   a CSV file or folder of CSVs, one row per time point; --time-col, channel columns,
        --window and --stride in rows, --patient-col for one stream per patient or device

examples:
  medssl ingest signals mitdb --format wfdb --records 101,106 --out data/beats
  medssl ingest signals BasicMotions_TRAIN.ts --format ts --out data/motions
  medssl ingest signals watch.csv --format csv --time-col t --patient-col wearer --window 100 --stride 50 --out data/watch
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ingest signals``."""
    p = subparsers.add_parser("signals", help="ECG records (WFDB), sktime .ts series, CSV sensor streams",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, metavar="SRC", help="folder or file to read")
    p.add_argument("--out", type=Path, required=True, metavar="DATA_DIR", help="where to write the data dir")
    p.add_argument("--format", choices=FORMATS, required=True, help="layout of SRC (see above)")
    p.add_argument("--records", help="wfdb: comma-separated record names to read (default: all)")
    p.add_argument("--max-records", type=int, help="wfdb: read at most this many records (quick trials)")
    p.add_argument("--before-s", type=float, default=0.25, help="wfdb: seconds of signal before each beat (default 0.25)")
    p.add_argument("--after-s", type=float, default=0.45, help="wfdb: seconds of signal after each beat (default 0.45)")
    p.add_argument("--leads", type=int, help="wfdb: keep the first N leads (default: all)")
    p.add_argument("--length", type=int, help="ts: resample every series to this many samples (default: longest)")
    p.add_argument("--time-col", help="csv: column with the time of each row")
    p.add_argument("--channels", help="csv: comma-separated channel columns (default: every numeric column)")
    p.add_argument("--patient-col", help="csv: column with the patient or device id (default: one stream per file)")
    p.add_argument("--label-col", help="csv: column with a label per row (a window takes its most frequent)")
    p.add_argument("--window", type=int, help="csv: rows per window")
    p.add_argument("--stride", type=int, help="csv: rows between window starts (default: --window)")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient-level train/val/test split")
    p.set_defaults(func=run)


def _wfdb(args: argparse.Namespace, errors: ErrorLog) -> tuple[list[np.ndarray], list[pd.DataFrame]]:
    if not args.src.is_dir():
        raise DataError(f"{args.src} is not a folder; pass the folder holding the .hea/.dat/.atr files")
    names = sorted(p.stem for p in args.src.glob("*.hea"))
    if args.records:
        wanted = [r.strip() for r in args.records.split(",") if r.strip()]
        unknown = [r for r in wanted if r not in names]
        if unknown:
            raise DataError(f"record(s) {unknown} have no .hea file in {args.src}; known: {', '.join(names[:30])}")
        names = wanted
    names = names[: args.max_records]
    if not names:
        raise DataError(f"{args.src} holds no .hea record headers")
    geometry = BeatWindow(args.before_s, args.after_s)
    windows, rows, fs0 = [], [], None
    for name in progress(names, desc="reading records", unit="record"):
        got = read_beats(args.src / name, geometry, errors, n_leads=args.leads)
        if got is None:
            continue
        w, r, fs = got
        if windows and (fs != fs0 or w.shape[1:] != windows[0].shape[1:]):
            errors.add(args.src / f"{name}.hea", f"{w.shape[1]} leads at {fs:g} Hz differ from the first record's "
                       f"{windows[0].shape[1]} leads at {fs0:g} Hz; use --leads or ingest it separately", count=1)
            continue
        fs0 = fs
        windows.append(w)
        rows.append(r.assign(fs=fs))
    return windows, rows


def _ts(args: argparse.Namespace, errors: ErrorLog) -> tuple[list[np.ndarray], list[pd.DataFrame]]:
    files = sorted(args.src.glob("*.ts")) if args.src.is_dir() else [args.src]
    if not files:
        raise DataError(f"{args.src} holds no .ts files")
    windows, rows = [], []
    for path in files:
        try:
            series, labels, _ = read_ts(path, args.length)
        except ReaderError as exc:
            errors.add(exc.path, exc.reason, count=1)
            continue
        if windows and series.shape[1:] != windows[0].shape[1:]:
            errors.add(path, f"series shape {series.shape[1:]} differs from {windows[0].shape[1:]}; pass --length", count=1)
            continue
        ok = ~np.isnan(series).any(axis=(1, 2))
        if not ok.all():
            errors.add(path, "series with missing values (?) skipped", count=int((~ok).sum()))
        ids = [f"{path.stem}:{i}" for i in range(len(series))]
        frame = pd.DataFrame({"case_id": ids, "patient_id": ids, "label": labels, "source_file": path.name})
        windows.append(series[ok])
        rows.append(frame[ok].reset_index(drop=True))
    return windows, rows


def _csv(args: argparse.Namespace, errors: ErrorLog) -> tuple[list[np.ndarray], list[pd.DataFrame]]:
    if not args.time_col or not args.window:
        raise DataError("--format csv needs --time-col (the time column) and --window (rows per window)")
    if args.window < 2 or (args.stride is not None and args.stride < 1):
        raise DataError("--window must be at least 2 and --stride at least 1")
    files = sorted(args.src.glob("*.csv")) if args.src.is_dir() else [args.src]
    channels = [c.strip() for c in args.channels.split(",")] if args.channels else None
    windows, rows = [], []
    for path in progress(files, desc="reading streams", unit="file"):
        try:
            w, r = read_stream_csv(path, args.time_col, args.window, args.stride or args.window, errors,
                                   channels=channels, patient_col=args.patient_col, label_col=args.label_col)
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


def run(args: argparse.Namespace) -> int:
    """Ingest, write the data dir, log a summary; returns 0."""
    if not args.src.exists():
        raise DataError(f"{args.src} does not exist; pass the folder or file to ingest")
    errors = ErrorLog()
    read = {"wfdb": _wfdb, "ts": _ts, "csv": _csv}[args.format]
    windows, rows = read(args, errors)
    args.out.mkdir(parents=True, exist_ok=True)
    errors.write(args.out)
    if not windows:
        raise DataError(f"no cases could be read from {args.src}; see {args.out / 'errors.csv'} for why")
    manifest = pd.concat(rows, ignore_index=True)
    manifest["label"] = manifest["label"].astype(object).where(manifest["label"].notna(), None)
    manifest["split"] = assign_patient_splits(manifest, seed=args.seed)
    manifest["domain"] = "signals"
    manifest["row"] = np.arange(len(manifest))
    manifest["source_format"] = args.format
    data = np.concatenate(windows)
    save_windows(args.out, data)
    write_manifest(manifest, args.out)
    log.info("ingested %d windows of %d channels x %d samples from %d patients; %d errors.csv rows -> %s",
             len(manifest), data.shape[1], data.shape[2], manifest["patient_id"].nunique(), len(errors), args.out)
    return 0
