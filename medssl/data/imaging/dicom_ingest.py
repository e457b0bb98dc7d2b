"""``medssl ingest dicom``: scan, decode every file in parallel, write manifest.parquet + errors.csv.

Workers (a ``ProcessPoolExecutor``, started once, on the first files the scan finds) parse and
fully decode each file (that is what validates it) and send back only small metadata dicts; pixels
never cross processes and are not stored. Decoding overlaps the scan: the first chunks go out
while the folder walk goes on; once it is done, the rest go largest first. The parent expands
multi-frame files into one case per frame, drops duplicate copies of the same SOP Instance UID
(the first path in sorted order wins), and writes the two files.

Start-up cost counts on every run: this module imports only what the workers need (pydicom,
numpy) before they fork; pandas and pyarrow (the manifest) are imported while they decode, and
scikit-learn not at all (an unlabelled split needs numpy only, ``medssl.data.splits``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import warnings
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from medssl.data.imaging.dicom import (
    decoder_failed,
    dicom_meta,
    has_pixels,
    non_image_reason,
    read_dicom_dataset,
    validate_pixels,
)
from medssl.data.imaging.dicom_scan import DicomSource
from medssl.data.imaging.pseudonym import patient_key
from medssl.errors import ReaderError
from medssl.progress import progress

if TYPE_CHECKING:
    import pandas as pd

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


SCAN_CHUNK = 4  # files per task while the scan is still going (small: the workers start sooner)
AHEAD = 2  # tasks queued per worker while scanning; more found files wait for the largest-first sort


class _LazyPool:
    """A ``ProcessPoolExecutor`` started on the first submit (then with all workers at once), with
    no more workers than files when the scan ended before that."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None

    def submit(self, chunk: list[str], voi: bool, key: str | None, files: int | None = None) -> Future:
        if self.pool is None:
            self.pool = ProcessPoolExecutor(max_workers=min(self.workers, files or self.workers))
        return self.pool.submit(inspect_chunk, chunk, voi, key)

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _submit_while_scanning(
    pool: _LazyPool, found: Iterator[str], pending: dict[str, None], voi: bool, key: str | None,
) -> list[Future]:
    """Submit every file ``found`` yields; returns the futures (each: a chunk's results).

    While the scan runs, a chunk of ``SCAN_CHUNK`` files goes out whenever fewer than ``AHEAD``
    tasks per worker are queued, so decoding starts with the first files found; the rest wait and,
    once the scan is done, go out largest first (``_chunks``). ``pending`` gets every path found.
    """
    futures: list[Future] = []
    queued: deque[Future] = deque()
    batch: list[str] = []
    waiting: list[str] = []
    for path in found:
        pending[path] = None
        batch.append(path)
        if len(batch) < SCAN_CHUNK:
            continue
        while queued and queued[0].done():
            queued.popleft()
        if len(queued) < AHEAD * pool.workers:
            futures.append(pool.submit(batch, voi, key))
            queued.append(futures[-1])
        else:
            waiting.extend(batch)
        batch = []
    rest = waiting + batch
    futures += [pool.submit(c, voi, key, files=len(rest)) for c in _chunks(rest, pool.workers)]
    return futures


def _run_pool(
    found: Iterable[str], workers: int, voi: bool, key: str | None, while_decoding: Callable[[], None] | None = None,
) -> Iterator[int | FileResult]:
    """Decode the files ``found`` yields in ``workers`` processes, started once, as the scan goes.

    Yields first the number of files found (once the scan is done: for the progress display), then
    one result per file as chunks finish. ``while_decoding`` runs in this process once every file
    is submitted (imports the writing needs, overlapped with the decoding). If a native decoder
    crashes a worker process (the pool breaks), the unanswered files, and those the scan has not
    reached yet, are retried one per task in a single worker, so only the file that crashes is rejected.
    """
    found = iter(found)
    pending: dict[str, None] = {}
    pool = _LazyPool(workers)
    announced = False
    try:
        try:
            futures = _submit_while_scanning(pool, found, pending, voi, key)
            announced = True
            yield len(pending)
            if while_decoding is not None:
                while_decoding()
            for future in as_completed(futures):
                for result in future.result():
                    pending.pop(result[0], None)
                    yield result
            return
        finally:
            pool.shutdown()
    except BrokenProcessPool:
        pending.update(dict.fromkeys(found))  # the scan may have stopped half-way
        if not announced:
            yield len(pending)
        log.warning("a decoding process died; retrying %d file(s) one at a time", len(pending))
    while pending:
        try:
            with ProcessPoolExecutor(max_workers=1) as single:
                futures = [single.submit(inspect_chunk, [p], voi, key) for p in pending]
                # one file per task, in submission order: the first unanswered one crashed the pool
                for future in futures:
                    for result in future.result():
                        pending.pop(result[0], None)
                        yield result
        except BrokenProcessPool:
            culprit = next(iter(pending))
            pending.pop(culprit)
            yield culprit, None, "the pixel decoder crashed on this file (its worker process died)"


def _import_for_writing() -> None:
    """Import what writing the manifest needs (pandas, pyarrow), e.g. while the workers decode."""
    import medssl.data.commit  # noqa: F401  (pandas, pyarrow, the manifest writer)
    import medssl.data.splits  # noqa: F401


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
        results = _run_pool(source, workers, voi, key, while_decoding=_import_for_writing)
    total = next(results)
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
) -> dict[str, int]:
    """Ingest ``src`` into ``out`` (manifest.parquet, errors.csv); returns counts for the summary line.

    ``workers``: processes decoding in parallel (default: all cores; 1 = in this process).
    Every case gets a ``split`` drawn by patient (``split_seed``): no patient is in two splits.
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
    for path, reason in [*source.missing, *rejected]:
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
