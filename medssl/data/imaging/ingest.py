"""Ingest PNG/JPEG folders (optional metadata CSV) or MedMNIST-style npz arrays into DATA_DIR.

``ingest_images(src, out, ImageIngestOptions(...))`` writes ``manifest.parquet`` (one row per
image) and ``errors.csv`` and returns the counts ``medssl ingest images`` prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medssl.data import ErrorLog, assign_patient_splits
from medssl.data.commit import IngestWriter, no_cases_error
from medssl.data.manifest import ERRORS_NAME
from medssl.data.imaging.images import scan_image_folder, scan_image_metadata
from medssl.data.imaging.npz import scan_npz
from medssl.data.splits import check_seed, check_split_fractions
from medssl.errors import ConfigError, DataError

FORMATS = ("folder", "npz")


@dataclass(frozen=True)
class ImageIngestOptions:
    """Options of ``medssl ingest images`` (the flags minus SRC and --out), with the CLI's defaults.

    ``format``: ``"folder"`` (PNG/JPEG files under SRC) or ``"npz"`` (a MedMNIST-style .npz file,
    labels and splits from the arrays). ``metadata``: CSV with one row per image (paths relative
    to SRC) whose ``image_col``, ``patient_col`` and ``label_col`` name the image path, patient id
    and class. ``label_from_folder``: without metadata, each image's folder name is its label.
    ``val_fraction``/``test_fraction``/``seed``: the patient-level split of cases that come
    without one. ``workers``: processes decoding images (default: all cores). ``class_names``
    (npz only): the name of each integer class, index i -> name, so the label column (and every
    model fine-tuned on it, and its predictions) holds names ("pneumonia") instead of numbers.
    Conflicting or out-of-range values raise ``DataError`` (an unknown format ``ConfigError``).
    """

    format: str = "folder"
    metadata: str | Path | None = None
    image_col: str = "image"
    patient_col: str | None = None
    label_col: str | None = None
    label_from_folder: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    workers: int = os.cpu_count() or 1
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"unknown image format {self.format!r}; use one of {', '.join(FORMATS)}")
        if self.class_names is not None:
            names = [str(n).strip() for n in self.class_names]
            if self.format != "npz":
                raise DataError("--class-names names the integer classes of --format npz; folder and metadata labels "
                                "are names already")
            if not names or any(not n for n in names) or len(set(names)) != len(names):
                raise DataError(f"--class-names {','.join(self.class_names)!r} needs distinct, non-empty names, one per "
                                "class in class order (e.g. --class-names normal,pneumonia)")
        if self.format == "npz":
            if self.metadata or self.patient_col or self.label_col or self.label_from_folder:
                raise DataError("--format npz takes labels and splits from the arrays; drop --metadata, --patient-col, --label-col and --label-from-folder")
        else:
            if self.metadata and self.label_from_folder:
                raise DataError("--label-from-folder and --metadata exclude each other; take labels from --label-col instead")
            if not self.metadata and (self.patient_col or self.label_col):
                raise DataError("--patient-col and --label-col name columns of --metadata CSV; pass --metadata too")
            if self.workers < 1:
                raise DataError(f"--workers {self.workers} must be at least 1")
        check_split_fractions(self.val_fraction, self.test_fraction)
        check_seed(self.seed)


def _check_src(src: Path, options: ImageIngestOptions) -> None:
    if options.format == "npz":
        if not src.is_file():
            raise DataError(f"{src} is not a file; --format npz expects the path of an .npz file")
        return
    if not src.is_dir():
        hint = " (for MedMNIST-style arrays add --format npz)" if src.suffix.lower() == ".npz" else ""
        raise DataError(f"{src} is not a folder; pass a folder of PNG/JPEG images{hint}")


def name_classes(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Replace integer ``label`` i by ``names[i]`` (object column, ``None`` where unlabelled);
    ``DataError`` when a class has no name or the arrays hold no labels."""
    if "label" not in df.columns:
        raise DataError("--class-names was given but the npz holds no *_labels arrays; drop --class-names")
    labels = df["label"]
    known = labels.notna()
    bad = sorted({int(v) for v in labels[known] if not 0 <= int(v) < len(names)})
    if bad:
        raise DataError(f"class(es) {', '.join(map(str, bad))} have no name in --class-names ({len(names)} given: "
                        f"{','.join(names)}); name every class, index 0 first")
    df = df.copy()
    df["label"] = pd.Series([names[int(v)] if k else None for v, k in zip(labels, known)], index=df.index, dtype=object)
    return df


def _add_splits(df: pd.DataFrame, options: ImageIngestOptions) -> pd.DataFrame:
    """Fill missing ``split`` values by patient; rows that came with a split keep it."""
    if "split" not in df.columns:
        df["split"] = pd.Series([None] * len(df), dtype=object)
    todo = df["split"].isna()
    if todo.any():
        df.loc[todo, "split"] = assign_patient_splits(
            df.loc[todo], val_fraction=options.val_fraction, test_fraction=options.test_fraction, seed=options.seed
        ).to_numpy()
    return df


def ingest_images(src: str | Path, out: str | Path, options: ImageIngestOptions | None = None) -> dict[str, Any]:
    """Scan ``src``, write ``out/manifest.parquet`` and ``out/errors.csv``; return the summary counts.

    The summary: ``cases``, ``patients``, ``splits`` (split -> cases), ``labelled`` (any label),
    ``rejected`` (rows of errors.csv), ``manifest`` and ``errors_csv`` (the paths written).
    Raises ``DataError`` when ``src`` does not fit ``options.format`` or no image could be read.
    """
    options = options if options is not None else ImageIngestOptions()
    src, out = Path(src), Path(out)
    _check_src(src, options)
    errors = ErrorLog()
    if options.format == "npz":
        df = scan_npz(src, errors)
        if options.class_names is not None:
            df = name_classes(df, [str(n).strip() for n in options.class_names])
    elif options.metadata:
        df = scan_image_metadata(src, options.metadata, errors, options.image_col, options.patient_col,
                                 options.label_col, options.workers)
    else:
        df = scan_image_folder(src, errors, label_from_folder=options.label_from_folder, workers=options.workers)
    if len(df) == 0:
        raise no_cases_error(out, errors, f"no image could be ingested from {src}")
    df = _add_splits(df, options)
    with IngestWriter(out, "images") as writer:
        path = writer.commit(df, errors)
    errors_path = out / ERRORS_NAME
    return {
        "cases": len(df),
        "patients": int(df["patient_id"].nunique()),
        "splits": df["split"].value_counts().to_dict(),
        "labelled": "label" in df.columns and bool(df["label"].notna().any()),
        "rejected": len(errors),
        "manifest": path,
        "errors_csv": errors_path,
    }
