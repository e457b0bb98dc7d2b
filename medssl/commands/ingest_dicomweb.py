"""``medssl ingest dicomweb URL [--study UID | --patient ID | --modality M --since DATE ...] --out DATA_DIR``."""

from __future__ import annotations

import argparse
import os

from medssl.commands.ingest_flags import int_range
from medssl.data.limits import MAX_WORKERS
from medssl.errors import ConfigError

HELP = """\
Fetch images from a PACS over DICOMweb and ingest them into DATA_DIR, as `medssl ingest dicom` does
for a folder (same manifest columns, errors.csv and --pseudonymize-key).

URL is the PACS's DICOMweb root, e.g. http://pacs.example.org:8042/dicom-web (Orthanc). The
filters combine (all must hold); at least one is needed:
  --study UID        one study                 --patient ID     every study of one patient
  --modality CT      only series of that kind  --since/--until  study date range (YYYY-MM-DD)

The studies are searched with QIDO-RS, their instances retrieved with WADO-RS (in the transfer
syntax the PACS keeps) into DATA_DIR/dicomweb/<study>/<series>/<SOP UID>.dcm, then checked and
listed like local files. A rerun (after an interruption, or to pick up new studies) retrieves only
the instances not already in DATA_DIR/dicomweb/. Those files are the PACS's own copies, patient
names included: keep DATA_DIR where such data may live. Patient ids never appear in the log.

Examples:
  medssl ingest dicomweb http://pacs:8042/dicom-web --modality CT --since 2024-01-01 --out data/ct
  medssl ingest dicomweb http://pacs:8042/dicom-web --patient 12345 --pseudonymize-key "$KEY" --out data/p
Then: medssl score ... --data DATA_DIR, and `medssl export sr` sends the results back to the PACS.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ingest dicomweb``."""
    parser = subparsers.add_parser(
        "dicomweb", help="studies from a PACS over DICOMweb (QIDO-RS/WADO-RS) -> manifest.parquet",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", metavar="URL", help="the PACS's DICOMweb root, e.g. http://pacs:8042/dicom-web")
    parser.add_argument("--out", required=True, metavar="DATA_DIR", help="folder for manifest.parquet, errors.csv "
                        "and the retrieved files (dicomweb/)")
    parser.add_argument("--study", metavar="UID", default=None, help="Study Instance UID of one study")
    parser.add_argument("--patient", metavar="ID", default=None, help="Patient ID as the PACS knows it (never logged)")
    parser.add_argument("--modality", metavar="M", default=None, help="keep only series of this modality (CT, MR, "
                        "CR, DX, US...)")
    parser.add_argument("--since", metavar="DATE", default=None, help="studies on or after this date (YYYY-MM-DD)")
    parser.add_argument("--until", metavar="DATE", default=None, help="studies on or before this date (YYYY-MM-DD)")
    parser.add_argument(
        "--pseudonymize-key", metavar="KEY", default=None,
        help="secret text; replaces each PatientID by a keyed hash in the manifest, as in `ingest dicom`",
    )
    parser.add_argument(
        "--workers", type=int_range(1, MAX_WORKERS), default=None, metavar="N",
        help=f"processes checking the retrieved files (default: all {os.cpu_count()} cores)",
    )
    parser.add_argument("--voi", action="store_true", help="apply each file's VOI LUT / window, as in `ingest dicom`")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search, retrieve what is missing, ingest; print a one-line summary."""
    from medssl.data.imaging.dicomweb import ingest_dicomweb
    from medssl.data.imaging.dicomweb_query import DicomwebQuery, parse_date

    if args.pseudonymize_key is not None and not args.pseudonymize_key.strip():
        raise ConfigError("--pseudonymize-key is empty; give a secret text or leave the flag out")
    query = DicomwebQuery(
        study=(args.study or "").strip() or None,
        patient=(args.patient or "").strip() or None,
        modality=(args.modality or "").strip().upper() or None,
        since=parse_date(args.since, "--since") if args.since else None,
        until=parse_date(args.until, "--until") if args.until else None,
    )
    s = ingest_dicomweb(args.url, args.out, query, key=args.pseudonymize_key, workers=args.workers, voi=args.voi)
    print(
        f"{s['matched']} instances matched ({s['retrieved']} retrieved, {s['already_here']} already here, "
        f"{s['failed']} failed); "
        f"{s['cases']} cases ({s['images']} images, {s['patients']} patients); {s['rejected']} rejected "
        f"-> {args.out}/errors.csv"
    )
    return 0
