"""``medssl ingest dicom SRC --out DATA_DIR [--pseudonymize-key KEY] [--workers N] [--voi]``."""

from __future__ import annotations

import argparse
import os

from medssl.commands.ingest_flags import int_range
from medssl.data.limits import MAX_WORKERS
from medssl.errors import ConfigError

HELP = """\
Read a folder of DICOM files (searched recursively), a single file, or a DICOMDIR into DATA_DIR.

Every file is fully decoded to check it: compressed files (JPEG, JPEG 2000, JPEG-LS, RLE) included.
DATA_DIR/manifest.parquet gets one row per image frame: case_id is the SOP Instance UID (plus
":<frame>" for multi-frame files), with patient_id, study/series UIDs, modality, size, pixel
spacing and encoding. Patient names are never read. Files that are not images (RT plans, SR
reports, ECG waveforms, DICOMDIR indexes), not DICOM, truncated or undecodable, and duplicate
copies of the same image are listed with the reason in DATA_DIR/errors.csv; the run goes on.
At training time CT pixels are in Hounsfield units and MONOCHROME1 X-rays are shown inverted.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ingest dicom``."""
    parser = subparsers.add_parser(
        "dicom", help="DICOM files, folders or DICOMDIRs -> manifest.parquet", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="a DICOM file, a DICOMDIR, or a folder searched recursively")
    parser.add_argument("--out", required=True, metavar="DATA_DIR", help="folder for manifest.parquet and errors.csv")
    parser.add_argument(
        "--pseudonymize-key", metavar="KEY", default=None,
        help="secret text; replaces each PatientID by a keyed hash (HMAC-SHA256, 16 hex digits). The same "
        "key gives the same id for the same patient in every run; keep the key private. A file without "
        "PatientID gets 'no-patient-id:<StudyInstanceUID>' (hashed too when a key is given)",
    )
    parser.add_argument(
        "--workers", type=int_range(1, MAX_WORKERS), default=None, metavar="N",
        help=f"processes decoding in parallel (default: all {os.cpu_count()} cores; 1 = no extra processes)",
    )
    parser.add_argument(
        "--voi", action="store_true",
        help="apply the file's VOI LUT / window (center/width) when reading pixels, instead of the full "
        "range of stored values (recorded in the manifest column 'voi')",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Ingest and print a one-line summary."""
    from medssl.data.imaging.dicom_ingest import ingest_dicom

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be 1 or more, got {args.workers}")
    if args.pseudonymize_key is not None and not args.pseudonymize_key.strip():
        raise ConfigError("--pseudonymize-key is empty; give a secret text or leave the flag out")
    summary = ingest_dicom(args.src, args.out, key=args.pseudonymize_key, workers=args.workers, voi=args.voi)
    print(
        f"{summary['cases']} cases ({summary['images']} images, {summary['patients']} patients) from "
        f"{summary['files']} files; {summary['rejected']} rejected -> {args.out}/errors.csv"
    )
    return 0
