"""``medssl ingest ehr SRC --out DATA_DIR``: ICU stays -> manifest + hourly grid tensor store."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from medssl.commands.ingest_flags import float_range, fraction, int_range, seed
from medssl.data.limits import MAX_COUNT, MAX_HOURS, MAX_VARIABLES

if TYPE_CHECKING:
    from medssl.data.ehr.ingest import EhrIngestOptions

log = logging.getLogger(__name__)

FORMATS = ("physionet2012", "mimic3", "csv")

HELP = """\
Read ICU stays into DATA_DIR: manifest.parquet (one row per stay with a train/val/test split drawn
by patient), ehr/grid-<id>.npz (values, observation masks, hours since last observation and static
features on a regular time grid; default hourly over the first 48 h), ehr/events-<id>.parquet (the
cleaned measurements, for timelines) and errors.csv (files rejected and values dropped as
impossible or not finite, e.g. a negative heart rate or inf, with counts; duplicate RecordIDs and
empty ids too). <id> names this ingest; the manifest, written last, records which files it
belongs to, so an interrupted re-ingest leaves the previous DATA_DIR whole, and a failed one leaves
it untouched. Grids over 10,000 time bins or 8 GiB are refused before anything is allocated.

formats:
  physionet2012  a folder of RecordID.txt files (PhysioNet/CinC 2012); --outcomes Outcomes-a.txt
                 adds the in-hospital death label
  mimic3         a MIMIC-III folder (ICUSTAYS, ADMISSIONS, PATIENTS + event tables); one case per
                 ICU stay, label = hospital_expire_flag
  csv            one CSV with one measurement per row; name its columns with --patient-col,
                 --time-col (hours, HH:MM or dates), --variable-col, --value-col

examples:
  medssl ingest ehr set-a --format physionet2012 --outcomes Outcomes-a.txt --out data/p12
  medssl ingest ehr vitals.csv --format csv --patient-col mrn --time-col charttime \\
      --variable-col name --value-col value --out data/vitals
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ingest ehr``."""
    p = subparsers.add_parser("ehr", help="ICU vitals and labs (PhysioNet 2012, MIMIC-III, long CSV)",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, metavar="SRC", help="folder (physionet2012, mimic3) or CSV file (csv)")
    p.add_argument("--out", type=Path, required=True, metavar="DATA_DIR", help="where to write the data dir")
    p.add_argument("--format", choices=FORMATS, required=True, help="layout of SRC (see above)")
    p.add_argument("--outcomes", type=Path, help="physionet2012: Outcomes-a.txt with In-hospital_death labels")
    p.add_argument("--patient-col", help="csv: column with the patient id")
    p.add_argument("--time-col", help="csv: column with the time (hours, HH:MM or date-time)")
    p.add_argument("--variable-col", help="csv: column naming what was measured")
    p.add_argument("--value-col", help="csv: column with the numeric value")
    p.add_argument("--case-col", help="csv: column with the stay/case id (default: one case per patient)")
    p.add_argument("--label-col", help="csv: column with a label per case (optional)")
    p.add_argument("--hours", type=float_range(0, MAX_HOURS, low_open=True), default=48.0, help="length of the observation window (default 48)")
    p.add_argument("--step-hours", type=float_range(0, MAX_HOURS, low_open=True), default=1.0, help="width of one time bin in hours (default 1)")
    p.add_argument("--max-variables", type=int_range(1, MAX_VARIABLES), default=64,
                   help="mimic3/csv: keep the variables measured in most training stays (default 64)")
    p.add_argument("--limit", type=int_range(1, MAX_COUNT), help="read only the first N stay files (quick trials)")
    p.add_argument("--val-fraction", type=fraction, default=0.15, metavar="F", help="share of patients for the val split, drawn by patient (default 0.15)")
    p.add_argument("--test-fraction", type=fraction, default=0.15, metavar="F", help="share of patients for the test split, drawn by patient (default 0.15)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the patient-level train/val/test split")
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> EhrIngestOptions:
    """The parsed flags as ``EhrIngestOptions`` (raises what the options' checks raise)."""
    from medssl.data.ehr.ingest import EhrIngestOptions

    return EhrIngestOptions(
        format=args.format, outcomes=args.outcomes, patient_col=args.patient_col, time_col=args.time_col,
        variable_col=args.variable_col, value_col=args.value_col, case_col=args.case_col, label_col=args.label_col,
        hours=args.hours, step_hours=args.step_hours, max_variables=args.max_variables, limit=args.limit,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    """Ingest with ``medssl.data.ehr.ingest.ingest_ehr`` and log the summary line; exit 0."""
    from medssl.data.ehr.ingest import ingest_ehr

    s = ingest_ehr(args.src, args.out, options_from_args(args))
    log.info("ingested %d stays (%d variables x %d bins) from %d measurements; %d dropped as invalid, "
             "%d errors.csv rows -> %s", s["cases"], s["variables"], s["bins"], s["measurements"],
             s["dropped"], s["errors"], args.out)
    return 0
