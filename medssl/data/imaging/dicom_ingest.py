"""``medssl ingest dicom``: scan, decode every file in parallel, write manifest.parquet + errors.csv.

Workers (a ``ProcessPoolExecutor``) parse and fully decode each file (that is what validates it)
and send back only small metadata dicts; pixels never cross processes and are not stored. The
parent expands multi-frame files into one case per frame, drops duplicate copies of the same SOP
Instance UID (the first path in sorted order wins), and writes the two files.

Start-up counts on every run, so the work is laid out to keep both cores busy from the start
(``medssl.data.imaging.dicom_workers``):

- before the workers fork, this process imports only what they need (pydicom, numpy); pandas and
  pyarrow (the manifest) are imported once every file is handed out, while the workers decode;
  scikit-learn is not imported at all (an unlabelled split needs numpy only, ``medssl.data.splits``);
- the workers start on the first files the folder walk finds (decoding overlaps the scan); once
  the walk is done, the rest go out largest first.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from medssl.data.imaging.dicom_scan import DicomSource
from medssl.data.imaging.dicom_workers import import_for_writing, run_pool, worker_context
from medssl.data.imaging.pseudonym import patient_key
from medssl.errors import ReaderError

if TYPE_CHECKING:
    from medssl.data.manifest import ErrorLog

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
    from medssl.data.imaging.dicom import (  # pydicom: here, so that importing this module does not load it
        decoder_failed,
        dicom_meta,
        has_pixels,
        non_image_reason,
        read_dicom_dataset,
        validate_pixels,
    )

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


def _decode(
    source: DicomSource, workers: int, voi: bool, key: str | None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Decode every file of ``source`` -> (file rows, [(path, reason)] of rejected files, by path).

    Every file scanned gives exactly one of the two.
    """
    if workers == 1:
        paths = sorted(source)
        results: Iterator[int | FileResult] = itertools.chain(
            [len(paths)], (r for p in paths for r in inspect_chunk([p], voi, key)))
    else:
        import medssl.data.imaging.dicom  # noqa: F401  (pydicom, numpy: the forked workers inherit them)

        results = run_pool(source, workers, voi, key, worker_context())
    total = next(results)  # the scan is done and every file handed out
    if workers > 1:
        import_for_writing()  # while the workers decode
    from medssl.progress import progress

    file_rows: list[dict[str, Any]] = []
    rejected: list[tuple[str, str]] = []
    for item in progress(results, total=int(total), desc="ingest dicom", unit="file"):  # type: ignore[arg-type]
        path, row, reason = item  # type: ignore[misc]
        if row is None:
            rejected.append((path, str(reason)[:MAX_REASON]))
        else:
            file_rows.append(row)
    return file_rows, sorted(rejected)


def _expand_frames(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One case per frame: case_id = SOP UID, or ``SOP:<frame>`` for multi-frame files."""
    n = int(row["frames"])
    base = {"domain": "imaging", "source_format": "dicom", **row}
    if n == 1:
        return [{**base, "case_id": row["sop_instance_uid"], "frame": 0}]
    return [{**base, "case_id": f"{row['sop_instance_uid']}:{i}", "frame": i} for i in range(n)]


def _cases(file_rows: list[dict[str, Any]], errors: "ErrorLog") -> tuple[list[dict[str, Any]], int]:
    """Manifest rows (one per frame) of the first copy of each SOP instance, in path order, and the
    number of distinct images; later copies become errors.csv rows."""
    seen: dict[str, str] = {}
    cases: list[dict[str, Any]] = []
    for row in sorted(file_rows, key=lambda r: r["path"]):
        first = seen.setdefault(row["sop_instance_uid"], row["path"])
        if first != row["path"]:
            errors.add(row["path"], f"duplicate SOP Instance UID: the same image was already ingested from {first}")
            continue
        cases.extend(_expand_frames(row))
    return cases, len(seen)


def ingest_dicom(
    src: str | Path,
    out: str | Path,
    key: str | None = None,
    workers: int | None = None,
    voi: bool = False,
    split_seed: int = 0,
    extra_errors: Sequence[tuple[str, str]] = (),
) -> dict[str, int]:
    """Ingest ``src`` into ``out`` (manifest.parquet, errors.csv); returns counts for the summary line.

    ``workers``: processes decoding in parallel (default: all cores; 1 = in this process).
    Every case gets a ``split`` drawn by patient (``split_seed``): no patient is in two splits.
    ``extra_errors``: ``(path, reason)`` rows found before the scan (e.g. instances a PACS failed to
    send), written to errors.csv with the rest.
    Raises ``DataError`` when ``src`` does not exist or no file yields an image.
    """
    source = DicomSource(src)
    workers = max(1, int(workers or os.cpu_count() or 1))
    file_rows, rejected = _decode(source, workers, voi, key)
    n_files = len(file_rows) + len(rejected)
    import pandas as pd

    from medssl.data.commit import IngestWriter, no_cases_error
    from medssl.data.manifest import ErrorLog
    from medssl.data.splits import assign_patient_splits

    errors = ErrorLog()
    for path, reason in [*extra_errors, *source.missing, *rejected]:
        errors.add(path, reason)
    cases, n_images = _cases(file_rows, errors)
    out = Path(out)
    if not cases:
        raise no_cases_error(out, errors, f"no readable DICOM image under {src} ({n_files} file(s) scanned)")
    manifest = pd.DataFrame(cases, columns=list(MANIFEST_COLUMNS))
    # patient-level train/val/test (no labels in DICOM: a plain split by patient, fixed seed)
    manifest["split"] = assign_patient_splits(manifest, seed=split_seed)
    with IngestWriter(out, "dicom") as writer:
        writer.commit(manifest, errors)
    summary = {"files": n_files, "images": n_images, "cases": len(cases), "rejected": len(errors),
               "patients": int(manifest["patient_id"].nunique())}
    log.info("ingest dicom: %(files)d files -> %(cases)d cases from %(images)d images of %(patients)d patients; "
             "%(rejected)d rejected (see errors.csv)", summary)
    return summary
