"""``medssl ingest signals SRC --out DATA_DIR``: ECG records, .ts series or CSV streams -> windows."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from medssl.commands.ingest_flags import float_range, fraction, int_range, seed
from medssl.data.limits import MAX_COUNT, MAX_SAMPLES, MAX_WINDOW_S

if TYPE_CHECKING:
    from medssl.data.signals.ingest import SignalIngestOptions

log = logging.getLogger(__name__)

FORMATS = ("wfdb", "ts", "csv")

HELP = """\
Cut physiological or sensor signals into fixed windows: DATA_DIR/signals/windows-<id>.npy (cases x
channels x samples), manifest.parquet (one row per window, with a train/val/test split drawn by
patient) and errors.csv (unreadable files, dropped beats or rows, NaN/inf values, with counts).
<id> names this ingest; the manifest, written last, records which files it belongs to, so an
interrupted re-ingest leaves the previous DATA_DIR whole. A run that cuts no window fails and
leaves DATA_DIR untouched.

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
    p.add_argument("--max-records", type=int_range(1, MAX_COUNT), help="wfdb: read at most this many records (quick trials)")
    p.add_argument("--before-s", type=float_range(0, MAX_WINDOW_S), default=0.25, help="wfdb: seconds of signal before each beat (default 0.25)")
    p.add_argument("--after-s", type=float_range(0, MAX_WINDOW_S), default=0.45, help="wfdb: seconds of signal after each beat (default 0.45)")
    p.add_argument("--leads", type=int_range(1, MAX_COUNT), help="wfdb: keep the first N leads (default: all)")
    p.add_argument("--length", type=int_range(2, MAX_SAMPLES), help="ts: resample every series to this many samples (default: longest)")
    p.add_argument("--time-col", help="csv: column with the time of each row")
    p.add_argument("--channels", help="csv: comma-separated channel columns (default: every numeric column)")
    p.add_argument("--patient-col", help="csv: column with the patient or device id (default: one stream per file)")
    p.add_argument("--label-col", help="csv: column with a label per row (a window takes its most frequent)")
    p.add_argument("--window", type=int_range(2, MAX_SAMPLES), help="csv: rows per window")
    p.add_argument("--stride", type=int_range(1, MAX_SAMPLES), help="csv: rows between window starts (default: --window)")
    p.add_argument("--val-fraction", type=fraction, default=0.15, metavar="F", help="share of patients for the val split, drawn by patient (default 0.15)")
    p.add_argument("--test-fraction", type=fraction, default=0.15, metavar="F", help="share of patients for the test split, drawn by patient (default 0.15)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the patient-level train/val/test split")
    p.set_defaults(func=run)


def _names(text: str | None, drop_empty: bool) -> tuple[str, ...] | None:
    """A comma-separated flag value as a tuple of names; no flag or ``""`` -> None."""
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    return tuple(p for p in parts if p) if drop_empty else tuple(parts)


def options_from_args(args: argparse.Namespace) -> SignalIngestOptions:
    """The parsed flags as ``SignalIngestOptions`` (raises what the options' checks raise)."""
    from medssl.data.signals.ingest import SignalIngestOptions

    return SignalIngestOptions(
        format=args.format, records=_names(args.records, drop_empty=True), max_records=args.max_records,
        before_s=args.before_s, after_s=args.after_s, leads=args.leads, length=args.length, time_col=args.time_col,
        channels=_names(args.channels, drop_empty=False), patient_col=args.patient_col, label_col=args.label_col,
        window=args.window, stride=args.stride, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    """Ingest with ``medssl.data.signals.ingest.ingest_signals`` and log the summary line; exit 0."""
    from medssl.data.signals.ingest import ingest_signals

    s = ingest_signals(args.src, args.out, options_from_args(args))
    log.info("ingested %d windows of %d channels x %d samples from %d patients; %d errors.csv rows -> %s",
             s["cases"], s["channels"], s["samples"], s["patients"], s["errors"], args.out)
    return 0
