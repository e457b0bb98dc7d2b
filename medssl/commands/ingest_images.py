"""``medssl ingest images SRC --out DATA_DIR``: PNG/JPEG folders (optional metadata CSV) or npz arrays."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pandas as pd

from medssl.data import ErrorLog, assign_patient_splits, write_manifest
from medssl.data.imaging.images import scan_image_folder, scan_image_metadata
from medssl.data.imaging.npz import scan_npz
from medssl.errors import DataError

log = logging.getLogger(__name__)

DESCRIPTION = """\
Read images into DATA_DIR/manifest.parquet (one row per image) and DATA_DIR/errors.csv (every file
that was rejected, with the reason). Every image is decoded once here, so a corrupt file is caught
now and not in the middle of training. Pixels are not copied: the manifest points at SRC.

Layouts:
  folder (default)  SRC is a folder of PNG/JPEG files, searched recursively. Without --metadata each
                    image is its own case and its own patient (case_id = path relative to SRC).
                    Labels come only from --metadata or, if you ask, from --label-from-folder.
  --metadata CSV    a table with one row per image: --image-col holds the path relative to SRC,
                    --patient-col the patient id (strongly advised: it keeps all images of one
                    patient in the same split), --label-col the class (optional).
  --format npz      SRC is a MedMNIST-style .npz file with train_images/train_labels,
                    val_images/val_labels, test_images/test_labels. One case per image,
                    case_id = "train:17", split = the key prefix, label = the integer class.
                    MedMNIST has no patient ids, so every image counts as its own patient.

Without a split in the data, cases get split = train/val/test by patient (no patient in two splits,
stratified by label when there are labels), set with --val-fraction, --test-fraction and --seed.

Examples:
  medssl ingest images ../shared/data/imaging/pneumoniamnist_trainval.npz --format npz --out data/pneumonia
  medssl ingest images xrays/ --metadata xrays/labels.csv --image-col file --patient-col patient \\
      --label-col finding --out data/xrays
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ingest images``."""
    p = subparsers.add_parser(
        "images",
        help="PNG/JPEG folders (with an optional metadata CSV) or MedMNIST-style .npz arrays",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="folder of PNG/JPEG images, or an .npz file with --format npz")
    p.add_argument("--out", required=True, metavar="DATA_DIR", help="folder to write manifest.parquet and errors.csv into")
    p.add_argument("--format", choices=("folder", "npz"), default="folder", help="layout of SRC (default: folder)")
    p.add_argument("--metadata", metavar="CSV", help="table with one row per image (paths relative to SRC)")
    p.add_argument("--image-col", default="image", metavar="COL", help="metadata column with the image path (default: image)")
    p.add_argument("--patient-col", metavar="COL", help="metadata column with the patient id (default: one patient per image)")
    p.add_argument("--label-col", metavar="COL", help="metadata column with the class label (default: no labels)")
    p.add_argument("--label-from-folder", action="store_true", help="without --metadata: use each image's folder name as its label")
    p.add_argument("--val-fraction", type=float, default=0.15, metavar="F", help="share of patients for validation when the data has no split (default 0.15)")
    p.add_argument("--test-fraction", type=float, default=0.15, metavar="F", help="share of patients for testing when the data has no split (default 0.15)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N", help="processes decoding images (default: all cores)")
    p.set_defaults(func=run)


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
