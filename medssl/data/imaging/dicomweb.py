"""``medssl ingest dicomweb``: search a PACS (QIDO-RS), retrieve what is missing (WADO-RS), ingest it.

Retrieved instances are kept as files ``DATA_DIR/dicomweb/<study>/<series>/<SOP>.dcm`` in the
transfer syntax the server stores (the client asks for any). A rerun retrieves only the instances
whose file is not there yet (each file is written under a temporary name and renamed once
complete, so an interrupted run never leaves half a file under the final name). The matched files
then go through ``medssl ingest dicom``'s own pipeline (:func:`ingest_dicom`): the same per-file
checks, manifest columns, errors.csv and pseudonymisation. The manifest covers the instances this
query matched; files retrieved by earlier queries stay in the folder for later reruns.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from medssl.data.imaging.dicom_ingest import ingest_dicom
from medssl.data.imaging.dicomweb_query import (
    DicomwebQuery,
    InstanceRef,
    connect,
    find_instances,
    quiet_client_log,
    server_errors,
    shown_url,
)
from medssl.progress import progress

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient

log = logging.getLogger(__name__)
RAW_FOLDER = "dicomweb"


def _safe_name(uid: str) -> str:
    """A UID as a file name (UIDs are digits and dots; anything else is hashed)."""
    if uid and len(uid) <= 64 and all(c.isdigit() or c == "." for c in uid):
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8")).hexdigest()[:32]


def instance_path(raw: Path, ref: InstanceRef) -> Path:
    """Where instance ``ref`` is kept under the raw folder."""
    return raw / _safe_name(ref.study) / _safe_name(ref.series) / f"{_safe_name(ref.sop)}.dcm"


# answers that this client must sign in (to the server or a proxy): stop instead of one row per instance
WHOLE_SERVER_REFUSALS = (401, 407)


def retrieve_missing(client: "DICOMwebClient", url: str, refs: list[InstanceRef], raw: Path,
                     ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Retrieve every instance of ``refs`` whose file is not under ``raw`` yet.

    Returns ``({"retrieved": n, "already_here": m, "failed": f}, [(path, reason)] of the f failed)``.
    An instance the server answers with an HTTP error (a missing or broken file in the PACS) is one
    such row and the run goes on; it is asked for again on the next run. An unreachable server, a
    timeout or a request to sign in (HTTP 401/407) stops with a one-line ``DataError``;
    what was retrieved so far is kept for the rerun.
    """
    import requests

    todo = [r for r in refs if not instance_path(raw, r).is_file()]
    counts = {"retrieved": 0, "already_here": len(refs) - len(todo), "failed": 0}
    failed: list[tuple[str, str]] = []
    for ref in progress(todo, total=len(todo), desc="retrieve dicomweb", unit="instance"):
        target = instance_path(raw, ref)
        target.parent.mkdir(parents=True, exist_ok=True)
        with server_errors(url, "an instance retrieval (WADO-RS)"):
            try:
                ds = client.retrieve_instance(ref.study, ref.series, ref.sop,
                                              media_types=(("application/dicom", "*"),))
            except requests.exceptions.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status in WHOLE_SERVER_REFUSALS:
                    raise
                reason = exc.response.reason if exc.response is not None else ""
                failed.append((str(target), f"not retrieved: the DICOMweb server answered HTTP {status} {reason} "
                                            "to this instance (WADO-RS); it is asked for again on the next run"))
                counts["failed"] += 1
                continue
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        try:
            ds.save_as(tmp, enforce_file_format=bool(getattr(ds, "file_meta", None)))
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        counts["retrieved"] += 1
    return counts, failed


def ingest_dicomweb(
    url: str,
    out: str | Path,
    query: DicomwebQuery,
    key: str | None = None,
    workers: int | None = None,
    voi: bool = False,
    split_seed: int = 0,
) -> dict[str, int]:
    """Search ``url`` for ``query``, retrieve the missing instances into ``out/dicomweb``, ingest them.

    Returns ``ingest_dicom``'s counts plus ``matched`` (instances the query found), ``retrieved``
    (fetched by this run), ``already_here`` (kept from an earlier run, not fetched again) and
    ``failed`` (the server answered an error for them: errors.csv rows, asked for again on a rerun).
    Raises ``DataError`` when the server cannot be reached, fails, or nothing matches.
    """
    out = Path(out)
    raw = out / RAW_FOLDER
    with quiet_client_log(), connect(url) as client:
        refs = find_instances(client, url, query)
        log.info("ingest dicomweb: %d instance(s) on %s match %s", len(refs), shown_url(url), query.describe())
        counts, failed = retrieve_missing(client, url, refs, raw)
    if failed:
        log.warning("ingest dicomweb: %d instance(s) could not be retrieved (listed in errors.csv)", len(failed))
    staging = Path(tempfile.mkdtemp(prefix="medssl-dicomweb-query-"))
    try:
        # the matched files only (links; ingest resolves them, so the manifest names the real files)
        for i, ref in enumerate(refs):
            if not instance_path(raw, ref).is_file():
                continue  # not retrieved: an errors.csv row already
            (staging / f"{i:08d}.dcm").symlink_to(instance_path(raw, ref).resolve())
        summary = ingest_dicom(staging, out, key=key, workers=workers, voi=voi, split_seed=split_seed,
                               extra_errors=failed)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**summary, "matched": len(refs), **counts}
