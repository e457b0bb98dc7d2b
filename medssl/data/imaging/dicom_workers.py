"""The decoding workers of ``medssl ingest dicom``: started once, fed while the folder walk goes on.

``run_pool`` hands the files a ``DicomSource`` yields to a ``ProcessPoolExecutor`` in chunks as they
are found (so decoding starts with the first files), the rest largest first once the walk is done,
and survives a worker killed by a native decoder. The workers are forked (``worker_context``) once
this process holds pydicom and numpy, and nothing heavier: they inherit those imports.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    from medssl.data.imaging.dicom_ingest import FileResult

log = logging.getLogger(__name__)


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


def worker_context() -> BaseContext:
    """The multiprocessing context of the decoding workers: ``fork`` where the platform has it.

    Forked workers start at once with what this process has imported (pydicom, numpy: see
    ``ingest_dicom``). Also explicit because ``forkserver`` and ``spawn`` re-run the caller's
    ``__main__`` in each worker (a user's script without ``if __name__ == "__main__"`` would run
    again) and pay the imports once per worker. Measured on 1,008 files, 2 cores, near idle: a
    forkserver that imported pydicom while this process imported pandas was no faster (1.46x vs 1.45x).
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _inspect_in_worker(paths: list[str], voi: bool, key: str | None) -> list[FileResult]:
    """``dicom_ingest.inspect_chunk`` as a worker task."""
    from medssl.data.imaging.dicom_ingest import inspect_chunk

    return inspect_chunk(paths, voi, key)


class _LazyPool:
    """A ``ProcessPoolExecutor`` made on the first submit, with no more workers than files when the
    scan ended before that."""

    def __init__(self, workers: int, context: BaseContext) -> None:
        self.workers = workers
        self.context = context
        self.pool: ProcessPoolExecutor | None = None

    def submit(self, chunk: list[str], voi: bool, key: str | None, files: int | None = None) -> Future:
        if self.pool is None:
            self.pool = ProcessPoolExecutor(max_workers=min(self.workers, files or self.workers), mp_context=self.context)
        return self.pool.submit(_inspect_in_worker, chunk, voi, key)

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


def run_pool(found: Iterable[str], workers: int, voi: bool, key: str | None, context: BaseContext) -> Iterator[int | FileResult]:
    """Decode the files ``found`` yields in ``workers`` processes of ``context``, as the scan goes.

    Yields first the number of files found (once the scan is done: for the progress display), then
    one result per file as chunks finish. If a native decoder crashes a worker process (the pool
    breaks), the unanswered files, and those the scan has not reached yet, are retried one per
    task in a single worker, so only the file that crashes is rejected.
    """
    found = iter(found)
    pending: dict[str, None] = {}
    pool = _LazyPool(workers, context)
    announced = False
    try:
        try:
            futures = _submit_while_scanning(pool, found, pending, voi, key)
            announced = True
            yield len(pending)
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
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as single:
                futures = [single.submit(_inspect_in_worker, [p], voi, key) for p in pending]
                # one file per task, in submission order: the first unanswered one crashed the pool
                for future in futures:
                    for result in future.result():
                        pending.pop(result[0], None)
                        yield result
        except BrokenProcessPool:
            culprit = next(iter(pending))
            pending.pop(culprit)
            yield culprit, None, "the pixel decoder crashed on this file (its worker process died)"


def import_for_writing() -> None:
    """Import what writing the manifest needs: pandas, pyarrow, the progress display (tqdm).

    Called once every file is handed out, while the workers decode (never while a worker may still
    be forked: no thread imports in parallel with a fork).
    """
    import medssl.data.commit  # noqa: F401  (pandas, pyarrow, the manifest writer)
    import medssl.data.splits  # noqa: F401
    import medssl.progress  # noqa: F401
