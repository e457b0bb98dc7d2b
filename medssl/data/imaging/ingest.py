"""Implementation of `medssl ingest images` (the command module only parses arguments)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from medssl.data import ErrorLog, assign_patient_splits, write_manifest
from medssl.data.imaging.images import scan_image_folder, scan_image_metadata
from medssl.data.imaging.npz import scan_npz
from medssl.errors import DataError

log = logging.getLogger(__name__)

def _check_args(args: argparse.Namespace, src: Path) -> None:
    if args.format == "npz":
        if args.metadata or args.patient_col or args.label_col or args.label_from_folder:
            raise DataError("--format npz takes labels and splits from the arrays; drop --metadata, --patient-col, --label-col and --label-from-folder")
        if not src.is_file():
            raise DataError(f"{src} is not a file; --format npz expects the path of an .npz file")
        return
    if not src.is_dir():
        hint = " (for MedMNIST-style arrays add --format npz)" if src.suffix.lower() == ".npz" else ""
        raise DataError(f"{src} is not a folder; pass a folder of PNG/JPEG images{hint}")
    if args.metadata and args.label_from_folder:
        raise DataError("--label-from-folder and --metadata exclude each other; take labels from --label-col instead")
    if not args.metadata and (args.patient_col or args.label_col):
        raise DataError("--patient-col and --label-col name columns of --metadata CSV; pass --metadata too")
    if args.workers < 1:
        raise DataError(f"--workers {args.workers} must be at least 1")


def _add_splits(df: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    """Fill missing ``split`` values by patient; rows that came with a split keep it."""
    if "split" not in df.columns:
        df["split"] = pd.Series([None] * len(df), dtype=object)
    todo = df["split"].isna()
    if todo.any():
        df.loc[todo, "split"] = assign_patient_splits(
            df.loc[todo], val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed
        ).to_numpy()
    return df


def run(args: argparse.Namespace) -> int:
    """Scan SRC, write DATA_DIR/manifest.parquet and errors.csv; exit 0 if any case was ingested."""
    src, out = Path(args.src), Path(args.out)
    _check_args(args, src)
    errors = ErrorLog()
    if args.format == "npz":
        df = scan_npz(src, errors)
    elif args.metadata:
        df = scan_image_metadata(src, args.metadata, errors, args.image_col, args.patient_col, args.label_col, args.workers)
    else:
        df = scan_image_folder(src, errors, label_from_folder=args.label_from_folder, workers=args.workers)
    out.mkdir(parents=True, exist_ok=True)
    errors_path = errors.write(out)
    if len(df) == 0:
        raise DataError(f"no image could be ingested from {src}; the reasons are in {errors_path}")
    df = _add_splits(df, args)
    path = write_manifest(df, out)
    counts = df["split"].value_counts().to_dict()
    labelled = "label" in df.columns and bool(df["label"].notna().any())
    log.info(
        "wrote %s: %d cases, %d patients, splits %s%s; %d rejected input(s) in %s",
        path, len(df), df["patient_id"].nunique(), counts, ", with labels" if labelled else ", no labels", len(errors), errors_path,
    )
    return 0
