"""``medssl ingest images SRC --out DATA_DIR``: PNG/JPEG folders (optional metadata CSV) or npz arrays."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from medssl.commands.ingest_flags import fraction, int_range, seed
from medssl.data.limits import MAX_WORKERS

if TYPE_CHECKING:
    from medssl.data.imaging.ingest import ImageIngestOptions

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
                    case_id = "train:17", split = the key prefix, label = the integer class,
                    or its name with --class-names (index i -> name).
                    MedMNIST has no patient ids, so every image counts as its own patient.

Without a split in the data, cases get split = train/val/test by patient (no patient in two splits,
stratified by label when there are labels), set with --val-fraction, --test-fraction and --seed.

Examples:
  medssl ingest images ../shared/data/imaging/pneumoniamnist_trainval.npz --format npz \\
      --class-names normal,pneumonia --out data/pneumonia
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
    p.add_argument("--class-names", type=_names, metavar="A,B,...", help="--format npz: the name of each integer class "
                   "in order (e.g. normal,pneumonia), so labels and predictions are names, not numbers")
    p.add_argument("--val-fraction", type=fraction, default=0.15, metavar="F", help="share of patients for validation when the data has no split (default 0.15)")
    p.add_argument("--test-fraction", type=fraction, default=0.15, metavar="F", help="share of patients for testing when the data has no split (default 0.15)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the random split (default 0)")
    p.add_argument("--workers", type=int_range(1, MAX_WORKERS), default=os.cpu_count() or 1, metavar="N", help="processes decoding images (default: all cores)")
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> ImageIngestOptions:
    """The parsed flags as ``ImageIngestOptions`` (raises what the options' checks raise)."""
    from medssl.data.imaging.ingest import ImageIngestOptions

    return ImageIngestOptions(
        format=args.format, metadata=args.metadata, image_col=args.image_col, patient_col=args.patient_col,
        label_col=args.label_col, label_from_folder=args.label_from_folder, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, seed=args.seed, workers=args.workers,
        class_names=args.class_names,
    )


def _names(text: str) -> tuple[str, ...]:
    """``"normal,pneumonia"`` -> ``("normal", "pneumonia")``."""
    return tuple(part.strip() for part in text.split(","))


def run(args: argparse.Namespace) -> int:
    """Ingest with ``medssl.data.imaging.ingest.ingest_images`` and log the summary line; exit 0."""
    from medssl.data.imaging.ingest import ingest_images

    s = ingest_images(args.src, args.out, options_from_args(args))
    log.info(
        "wrote %s: %d cases, %d patients, splits %s%s; %d rejected input(s) in %s",
        s["manifest"], s["cases"], s["patients"], s["splits"], ", with labels" if s["labelled"] else ", no labels",
        s["rejected"], s["errors_csv"],
    )
    return 0
