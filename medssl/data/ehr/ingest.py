"""Implementation of `medssl ingest ehr` (the command module only parses arguments)."""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from medssl.data import ErrorLog, assign_patient_splits, write_manifest
from medssl.data.ehr.grid import STATIC_PREFIX, build_grid, choose_variables
from medssl.data.ehr.long_csv import clean_events, read_long_csv
from medssl.data.ehr.mimic3 import STATIC_NAMES as MIMIC_STATIC
from medssl.data.ehr.mimic3 import read_mimic3
from medssl.data.ehr.physionet2012 import STATIC, VARIABLES, read_physionet2012
from medssl.errors import DataError

log = logging.getLogger(__name__)

def _read(args: argparse.Namespace, errors: ErrorLog) -> tuple[pd.DataFrame, pd.DataFrame, list[str] | None, list[str]]:
    if not args.src.exists():
        raise DataError(f"{args.src} does not exist; pass the folder or file to ingest")
    if args.format == "physionet2012":
        events, cases = read_physionet2012(args.src, errors, outcomes=args.outcomes, limit=args.limit)
        return events, cases, list(VARIABLES), list(STATIC)
    if args.format == "mimic3":
        events, cases = read_mimic3(args.src, errors)
        return events, cases, None, list(MIMIC_STATIC)
    needed = {"--patient-col": args.patient_col, "--time-col": args.time_col,
              "--variable-col": args.variable_col, "--value-col": args.value_col}
    missing = [flag for flag, value in needed.items() if not value]
    if missing:
        raise DataError(f"--format csv needs {', '.join(missing)} to name the columns of {args.src}")
    if not args.src.is_file():
        raise DataError(f"{args.src} is not a file; --format csv reads one CSV file")
    events, cases = read_long_csv(args.src, args.patient_col, args.time_col, args.variable_col,
                                  args.value_col, args.case_col, args.label_col)
    return events, cases, None, []


def run(args: argparse.Namespace) -> int:
    """Ingest, write the data dir, log a summary; returns 0."""
    if args.max_variables < 1:
        raise DataError("--max-variables must be at least 1")
    errors = ErrorLog()
    events, cases, variables, static_names = _read(args, errors)
    n_raw = len(events)
    events = clean_events(events, errors, hours=args.hours)
    cases["split"] = assign_patient_splits(cases, seed=args.seed)
    if variables is None:
        train_ids = cases.loc[cases["split"] == "train", "case_id"].tolist()
        variables = choose_variables(events, train_ids, args.max_variables)
    grid = build_grid(events, cases["case_id"].tolist(), variables, static_names, args.hours, args.step_hours)
    args.out.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    series = events[~events["variable"].str.startswith(STATIC_PREFIX)]
    series[["case_id", "time_h", "variable", "value"]].to_parquet(args.out / "ehr" / "events.parquet", index=False)
    manifest = cases.assign(
        domain="ehr", grid_row=range(len(cases)), n_observations=grid.mask.sum(axis=(1, 2)).astype(int),
        source_format=args.format,
    )
    if "label" in manifest.columns:
        manifest["label"] = manifest["label"].astype(object).where(manifest["label"].notna(), None)
    write_manifest(manifest, args.out)
    errors.write(args.out)
    dropped = int(errors.frame()["count"].fillna(0).sum()) if "count" in errors.frame().columns else 0
    log.info("ingested %d stays (%d variables x %d bins) from %d measurements; %d dropped as invalid, "
             "%d errors.csv rows -> %s", len(cases), len(variables), grid.values.shape[-1], n_raw,
             dropped, len(errors), args.out)
    return 0
