"""``medssl ingest dicom``: scan, decode every file in parallel, write manifest.parquet + errors.csv.

Workers (a ``ProcessPoolExecutor`` fed with chunks of paths) parse and fully decode each file (that
is what validates it) and send back only small metadata dicts; pixels never cross processes and are
not stored. The parent expands multi-frame files into one case per frame, drops duplicate copies of
the same SOP Instance UID (the first path in sorted order wins), and writes the two files.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from medssl.data.imaging.dicom import (
    decoder_failed,
    dicom_meta,
    has_pixels,
    non_image_reason,
    read_dicom_dataset,
    validate_pixels,
)
from medssl.data.imaging.dicom_scan import scan_dicom_source
from medssl.data.imaging.pseudonym import patient_key
from medssl.data.commit import IngestWriter, no_cases_error
from medssl.data.manifest import ErrorLog
from medssl.data.splits import assign_patient_splits
from medssl.errors import ReaderError
from medssl.progress import progress

log = logging.getLogger(__name__)

# (path, file-level row or None, rejection reason or None)
FileResult = tuple[str, "dict[str, Any] | None", "str | None"]
MANIFEST_COLUMNS = (
    "case_id", "patient_id", "domain", "source_format", "path", "frame", "study_uid", "series_uid",
    "sop_instance_uid", "modality", "rows", "columns", "frames", "pixel_spacing",
    "photometric_interpretation", "transfer_syntax", "has_file_meta", "voi",
)
MAX_REASON = 300


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom warnings and log lines while parsing: they can quote element values (names)."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def inspect_dicom_file(path: str, voi: bool, key: str | None) -> FileResult:
    """Parse and decode ``path``; return its file-level manifest row, or the reason it is rejected."""
    try:
        ds, has_meta = read_dicom_dataset(path)
        if not has_pixels(ds):
            return path, None, non_image_reason(ds)
        sop = str(ds.get("SOPInstanceUID") or "").strip()
        if not sop:
            return path, None, "no SOP Instance UID (0008,0018): cannot name the case; fix the export"
        try:
            validate_pixels(ds, voi=voi)
            meta = dicom_meta(ds, has_meta)
        except BaseException as exc:  # decoders raise many types for broken pixel data, pyo3 ones panic
            if not decoder_failed(exc):
                raise
            return path, None, f"pixel data cannot be decoded: {type(exc).__name__}: {exc}"
        study = str(ds.get("StudyInstanceUID") or "")
        series = str(ds.get("SeriesInstanceUID") or "")
        row = {
            "patient_id": patient_key(str(ds.get("PatientID") or ""), study, series, sop, key),
            "path": path,
            "study_uid": study,
            "series_uid": series,
            "sop_instance_uid": sop,
            **{k: meta[k] for k in MANIFEST_COLUMNS if k in meta},
            "voi": voi,
        }
        return path, row, None
    except ReaderError as exc:
        return path, None, exc.reason
    except Exception as exc:  # anything else a hostile file triggers is still one errors.csv row
        return path, None, f"unreadable DICOM: {type(exc).__name__}: {exc}"


def inspect_chunk(paths: list[str], voi: bool, key: str | None) -> list[FileResult]:
    """``inspect_dicom_file`` over a chunk (one task per chunk keeps inter-process traffic small)."""
    with _quiet_pydicom():
        return [inspect_dicom_file(p, voi, key) for p in paths]


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _chunks(paths: list[str], workers: int) -> list[list[str]]:
    """Largest files first in small chunks, so no worker is left alone with the big ones at the end."""
    ordered = sorted(paths, key=_file_size, reverse=True)
    size = max(1, min(8, math.ceil(len(paths) / (workers * 8))))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _run_pool(paths: list[str], workers: int, voi: bool, key: str | None) -> Iterator[FileResult]:
    """Yield results as chunks finish.

    If a native decoder crashes a worker process (the pool breaks), the unfinished files are
    retried one per task in a single worker, so only the file that crashes is rejected.
    """
    pending = dict.fromkeys(paths)
    isolate = False
    while pending:
        batch = list(pending)
        chunks = [[p] for p in batch] if isolate else _chunks(batch, workers)
        try:
            with ProcessPoolExecutor(max_workers=1 if isolate else workers) as pool:
                futures = [pool.submit(inspect_chunk, c, voi, key) for c in chunks]
                # in isolation, submission order tells which file was running when the pool broke
                for future in futures if isolate else as_completed(futures):
                    for result in future.result():
                        pending.pop(result[0], None)
                        yield result
        except BrokenProcessPool:
            if isolate:
                culprit = next(iter(pending))
                pending.pop(culprit)
                yield culprit, None, "the pixel decoder crashed on this file (its worker process died)"
            else:
                log.warning("a decoding process died; retrying %d file(s) one at a time", len(pending))
                isolate = True


def _expand_frames(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One case per frame: case_id = SOP UID, or ``SOP:<frame>`` for multi-frame files."""
    n = int(row["frames"])
    base = {"domain": "imaging", "source_format": "dicom", **row}
    if n == 1:
        return [{**base, "case_id": row["sop_instance_uid"], "frame": 0}]
    return [{**base, "case_id": f"{row['sop_instance_uid']}:{i}", "frame": i} for i in range(n)]


def ingest_dicom(
    src: str | Path,
    out: str | Path,
    key: str | None = None,
    workers: int | None = None,
    voi: bool = False,
    split_seed: int = 0,
) -> dict[str, int]:
    """Ingest ``src`` into ``out`` (manifest.parquet, errors.csv); returns counts for the summary line.

    ``workers``: processes decoding in parallel (default: all cores; 1 = in this process).
    Every case gets a ``split`` drawn by patient (``split_seed``): no patient is in two splits.
    Raises ``DataError`` when ``src`` does not exist or no file yields an image.
    """
    paths, missing = scan_dicom_source(src)
    errors = ErrorLog()
    for path, reason in missing:
        errors.add(path, reason)
    workers = max(1, int(workers or os.cpu_count() or 1))
    workers = min(workers, max(1, len(paths)))
    if workers == 1:
        results: Iterator[FileResult] = (r for p in paths for r in inspect_chunk([p], voi, key))
    else:
        results = _run_pool(paths, workers, voi, key)
    file_rows: list[dict[str, Any]] = []
    for path, row, reason in progress(results, total=len(paths), desc="ingest dicom", unit="file"):
        if row is None:
            errors.add(path, str(reason)[:MAX_REASON])
        else:
            file_rows.append(row)
    seen: dict[str, str] = {}
    cases: list[dict[str, Any]] = []
    for row in sorted(file_rows, key=lambda r: r["path"]):
        first = seen.setdefault(row["sop_instance_uid"], row["path"])
        if first != row["path"]:
            errors.add(row["path"], f"duplicate SOP Instance UID: the same image was already ingested from {first}")
            continue
        cases.extend(_expand_frames(row))
    out = Path(out)
    if not cases:
        raise no_cases_error(out, errors, f"no readable DICOM image under {src} ({len(paths)} file(s) scanned)")
    manifest = pd.DataFrame(cases, columns=list(MANIFEST_COLUMNS))
    # patient-level train/val/test (no labels in DICOM: a plain split by patient, fixed seed)
    manifest["split"] = assign_patient_splits(manifest, seed=split_seed)
    with IngestWriter(out, "dicom") as writer:
        writer.commit(manifest, errors)
    summary = {"files": len(paths), "images": len(seen), "cases": len(cases), "rejected": len(errors),
               "patients": int(manifest["patient_id"].nunique())}
    log.info("ingest dicom: %(files)d files -> %(cases)d cases from %(images)d images of %(patients)d patients; "
             "%(rejected)d rejected (see errors.csv)", summary)
    return summary
