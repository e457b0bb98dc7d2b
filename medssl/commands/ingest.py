"""``medssl ingest {dicom,dicomweb,images,ehr,signals,transactions} SRC --out DATA_DIR``."""

from __future__ import annotations

import argparse
import importlib

# One module per source kind; each defines ``register(subparsers)``. Add a line per new reader.
INGEST_COMMANDS: tuple[str, ...] = (
    "medssl.commands.ingest_dicom",
    "medssl.commands.ingest_dicomweb",
    "medssl.commands.ingest_ehr",
    "medssl.commands.ingest_signals",
    "medssl.commands.ingest_images",
    "medssl.commands.ingest_transactions",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ingest`` and its per-domain subcommands."""
    parser = subparsers.add_parser(
        "ingest",
        help="read raw data (DICOM, images, EHR, signals, transactions) into DATA_DIR/manifest.parquet",
        description="Read a folder or file of raw data into DATA_DIR: manifest.parquet (one row per "
        "case, keyed by case_id and patient_id) and errors.csv (every rejected input, with the reason).",
    )
    kinds = parser.add_subparsers(dest="source_kind", metavar="KIND")
    for module_name in INGEST_COMMANDS:
        importlib.import_module(module_name).register(kinds)
