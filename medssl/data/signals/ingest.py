"""Implementation of `medssl ingest signals` (the command module only parses arguments)."""

from __future__ import annotations

import argparse
import logging

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
