"""PNG/JPEG images: a reader returning grey float pixels, and the folder/metadata scans for ingest.

Each image is decoded once at ingest (so a truncated or corrupt file is caught there and lands in
``errors.csv``), and again (once) when the Dataset builds its cache.
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from medssl.data.manifest import ErrorLog
from medssl.errors import DataError, ReaderError
from medssl.progress import progress

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_PARALLEL_FROM = 64  # below this many files a process pool costs more than it saves


def read_image_pixels(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a PNG/JPEG file into grey pixels.

    Returns ``(pixels, meta)``: ``pixels`` float32 ``(H, W)`` in the file's own value range
    (0-255 for 8-bit, 0-65535 for 16-bit PNG); colour (RGB, palette, with or without alpha) is
    converted to luminance (ITU-R 601, Pillow's ``convert("L")``); an EXIF orientation tag is
    applied. ``meta``: ``mode``, ``rows``,
    ``columns``, ``format``. Raises ``ReaderError`` for a missing, truncated or non-image file.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()  # full decode: a truncated file fails here, not later
                fmt = opened.format
                img = ImageOps.exif_transpose(opened)  # photos/exports tagged "rotated" come out upright
                mode = img.mode
                if mode in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
                    pixels = np.asarray(img)
                else:  # RGB, RGBA, P, LA, 1, CMYK, YCbCr ...
                    pixels = np.asarray(img.convert("L"))
    except FileNotFoundError:
        raise ReaderError(str(path), "file not found") from None
    except UnidentifiedImageError:
        raise ReaderError(str(path), "not a PNG/JPEG image Pillow can identify") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ReaderError(str(path), f"could not be decoded ({exc})") from None
    if pixels.ndim != 2 or pixels.size == 0:
        raise ReaderError(str(path), f"decoded to an unsupported array of shape {pixels.shape}")
    meta = {"mode": mode, "format": fmt, "rows": int(pixels.shape[0]), "columns": int(pixels.shape[1])}
    return pixels.astype(np.float32), meta


def _check(path: str) -> tuple[str, int, int, str | None]:
    """``(path, rows, columns, error)`` after one full decode (runs in a worker process)."""
    try:
        _, meta = read_image_pixels(path)
    except ReaderError as exc:
        return path, 0, 0, exc.reason
    return path, meta["rows"], meta["columns"], None


def check_images(paths: list[Path], workers: int) -> list[tuple[str, int, int, str | None]]:
    """Decode every file once, over ``workers`` processes; results in the order of ``paths``."""
    names = [str(p) for p in paths]
    if workers <= 1 or len(names) < _PARALLEL_FROM:
        return [_check(p) for p in progress(names, total=len(names), desc="decode images", unit="img")]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_check, names, chunksize=max(1, min(256, len(names) // (8 * workers))))
        return list(progress(results, total=len(names), desc="decode images", unit="img"))


def find_images(src: Path) -> list[Path]:
    """Every PNG/JPEG file under ``src`` (recursive, sorted, hidden files and folders skipped)."""
    found = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found)


def _rows(src: Path, items: list[tuple[str, Path, Any, Any]], workers: int, errors: ErrorLog) -> pd.DataFrame:
    """Manifest rows for ``(case_id, file, patient_id, label)`` items whose file decodes."""
    checked = check_images([f for _, f, _, _ in items], workers)
    rows = []
    for (case_id, file, patient, label), (_, n_rows, n_cols, error) in zip(items, checked):
        if error is not None:
            errors.add(file, error)
            continue
        rows.append(
            {
                "case_id": case_id,
                "patient_id": patient,
                "domain": "imaging",
                "label": label,
                "source_format": "image",
                "path": str(file.resolve()),
                "frame": 0,
                "rows": n_rows,
                "columns": n_cols,
            }
        )
    df = pd.DataFrame(rows, columns=["case_id", "patient_id", "domain", "label", "source_format", "path", "frame", "rows", "columns"])
    if df["label"].isna().all():
        df = df.drop(columns="label")
    return df


def scan_image_folder(src: str | Path, errors: ErrorLog, label_from_folder: bool = False, workers: int = 1) -> pd.DataFrame:
    """Manifest rows for every PNG/JPEG under ``src`` (no metadata file).

    ``case_id`` and ``patient_id`` = the path relative to ``src`` (one patient per image: without a
    metadata file nothing says which images share a patient). ``label`` = the name of the image's
    folder only when ``label_from_folder`` (images directly in ``src`` are then rejected).
    """
    src = Path(src)
    files = find_images(src)
    if not files:
        raise DataError(f"no PNG/JPEG files ({', '.join(IMAGE_SUFFIXES)}) found under {src}")
    folders = {f.parent for f in files}
    if not label_from_folder and len(folders) > 1:
        log.info(
            "images sit in %d sub-folders; no labels were taken from folder names "
            "(pass --label-from-folder if each folder is a class)", len(folders)
        )
    items = []
    for f in files:
        rel = f.relative_to(src).as_posix()
        label = None
        if label_from_folder:
            if f.parent == src:
                errors.add(f, "--label-from-folder: image sits directly in SRC, not in a class folder")
                continue
            label = f.parent.name
        items.append((rel, f, rel, label))
    return _rows(src, items, workers, errors)


def _require_columns(table: pd.DataFrame, metadata: Path, wanted: dict[str, str | None]) -> None:
    for flag, col in wanted.items():
        if col is not None and col not in table.columns:
            raise DataError(
                f"column {col!r} (given by {flag}) is not in {metadata}; its columns are "
                f"{list(table.columns)}. Pass {flag} with one of those names"
            )


def scan_image_metadata(
    src: str | Path,
    metadata: str | Path,
    errors: ErrorLog,
    image_col: str,
    patient_col: str | None = None,
    label_col: str | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """Manifest rows for the images listed in a metadata CSV (paths relative to ``src``).

    ``case_id`` = the image path as written in the CSV; ``patient_id`` from ``patient_col`` (else
    = case_id); ``label`` from ``label_col`` (kept as text). Rows without an image, with a missing
    or undecodable file, a duplicate image or an empty patient id become ``errors`` rows. A named
    column absent from the CSV raises ``DataError`` listing the columns that exist.
    """
    src, metadata = Path(src), Path(metadata)
    if not metadata.is_file():
        raise DataError(f"metadata file {metadata} does not exist; pass --metadata with a CSV path")
    try:
        table = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"metadata file {metadata} is not a readable CSV ({exc})") from None
    _require_columns(table, metadata, {"--image-col": image_col, "--patient-col": patient_col, "--label-col": label_col})
    if patient_col is None:
        log.warning("no --patient-col: every image is treated as its own patient, so splits are per image")
    items, seen = [], set()
    for line, rec in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        where = f"{metadata}:{line}"
        name = rec[image_col].strip()
        if not name:
            errors.add(where, f"row has no image in column {image_col!r}")
            continue
        case_id = Path(name).as_posix()
        if case_id in seen:
            errors.add(where, f"image {case_id!r} is listed twice; only its first row was used")
            continue
        file = src / name
        if not file.is_file():
            errors.add(file, f"listed in {metadata.name} line {line} but not found under {src}")
            continue
        patient = rec[patient_col].strip() if patient_col else case_id
        if not patient:
            errors.add(where, f"row has an empty patient id in column {patient_col!r}")
            continue
        label = rec[label_col].strip() if label_col else ""
        seen.add(case_id)
        items.append((case_id, file, patient, label or None))
    return _rows(src, items, workers, errors)
