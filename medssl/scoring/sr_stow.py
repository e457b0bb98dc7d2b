"""Send DICOM SR files to a PACS over STOW-RS (``dicomweb-client``'s ``store_instances``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pydicom

from medssl.data.imaging.dicomweb_query import connect, quiet_client_log, server_errors, shown_url
from medssl.errors import DataError
from medssl.progress import Progress

BATCH = 25  # instances per STOW-RS request


def stow(url: str, paths: Sequence[str | Path]) -> int:
    """Store every file of ``paths`` on the DICOMweb server ``url``; returns how many it accepted.

    Raises ``DataError`` (one line) when the server cannot be reached, answers an HTTP error, or
    lists an instance as failed in its STOW-RS response.
    """
    stored = 0
    with quiet_client_log(), connect(url) as client, Progress(len(paths), desc="stow sr", unit="report") as bar:
        for start in range(0, len(paths), BATCH):
            datasets = [pydicom.dcmread(p) for p in paths[start : start + BATCH]]
            with server_errors(url, "the STOW-RS store"):
                answer = client.store_instances(datasets)
            failed = list(answer.get("FailedSOPSequence") or []) if answer is not None else []
            if failed:
                reason = failed[0].get("FailureReason", "unknown")
                raise DataError(f"{shown_url(url)} refused {len(failed)} of {len(datasets)} SR instance(s) "
                                f"(first failure reason code {reason}); see the server's log")
            stored += len(datasets)
            bar.update(len(datasets))
    return stored
