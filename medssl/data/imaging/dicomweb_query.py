"""Talking to a PACS over DICOMweb (``dicomweb-client``): the query, the search, one-line errors.

:class:`DicomwebQuery` holds what ``medssl ingest dicomweb`` asks for (a study, a patient, a
modality, a study-date range). :func:`find_instances` walks the QIDO-RS hierarchy (studies ->
series -> instances, every page of each answer) and returns the instances to retrieve.
:func:`server_errors` turns what ``requests`` raises into one line that says what went wrong and
how to fix it, never quoting a query string (a patient id would be in it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

from medssl.errors import ConfigError, DataError

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
PAGE_SIZE = 1000  # results per QIDO-RS request
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class InstanceRef:
    """One instance on the server: its study, series and SOP Instance UIDs."""

    study: str
    series: str
    sop: str


@dataclass(frozen=True)
class DicomwebQuery:
    """What to retrieve: every instance of the studies matching all the given filters.

    ``since``/``until``: study dates as ``YYYYMMDD`` (both ends included). ``modality`` keeps
    only the series of that modality (``CT``, ``MR``, ``CR``...).
    """

    study: str | None = None
    patient: str | None = None
    modality: str | None = None
    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        if not any((self.study, self.patient, self.modality, self.since, self.until)):
            raise ConfigError("give at least one of --study, --patient, --modality, --since, --until "
                              "(a PACS holds far more than one ingest should take)")
        if self.study and not _UID.match(self.study):
            raise ConfigError(f"--study {self.study!r} is not a DICOM UID (digits separated by dots)")

    def study_filters(self) -> dict[str, str]:
        """QIDO-RS filters of the study search."""
        filters: dict[str, str] = {}
        if self.study:
            filters["StudyInstanceUID"] = self.study
        if self.patient:
            filters["PatientID"] = self.patient
        if self.modality:
            filters["ModalitiesInStudy"] = self.modality
        if self.since or self.until:
            filters["StudyDate"] = f"{self.since or ''}-{self.until or ''}"
        return filters

    def describe(self) -> str:
        """The query in words for messages, without the patient id's value."""
        parts = [f"study {self.study}"] if self.study else []
        if self.patient:
            parts.append("the given patient id")
        if self.modality:
            parts.append(f"modality {self.modality}")
        if self.since or self.until:
            parts.append(f"study date {self.since or '...'} to {self.until or '...'}")
        return ", ".join(parts)


def parse_date(text: str, flag: str) -> str:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` -> ``YYYYMMDD``; ``ConfigError`` naming ``flag`` otherwise."""
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text.strip(), fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    raise ConfigError(f"{flag} {text!r} is not a date; write it as YYYY-MM-DD, e.g. 2024-01-31")


def shown_url(url: str) -> str:
    """``url`` without user name, password or query string (safe to print)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@contextlib.contextmanager
def connect(url: str) -> Iterator["DICOMwebClient"]:
    """A client for the DICOMweb root ``url`` (e.g. ``http://pacs:8042/dicom-web``); its connections
    are closed on exit (a server keeps an idle kept-alive connection, and its thread, otherwise)."""
    import requests
    from dicomweb_client import DICOMwebClient

    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ConfigError(f"{shown_url(url) or url!r} is not an http(s) URL; give the server's DICOMweb root, "
                          "e.g. http://pacs.example.org:8042/dicom-web")
    with requests.Session() as session:
        client = DICOMwebClient(url.rstrip("/"), session=session, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        # no silent retries (its retry wraps refused connections too: ~30 s of backoff and traceback
        # warnings before the error); a failed run is rerun and resumes where it stopped
        client.set_http_retry_params(retry=False)
        yield client


def _http_hint(status: int) -> str:
    if status in (401, 403):
        return "the server wants credentials or refuses this client; ask its administrator for access"
    if status == 404:
        return "check the URL: it must be the server's DICOMweb root (Orthanc: http://HOST:8042/dicom-web)"
    if status >= 500:
        return "the server failed; see its log, then rerun (what was retrieved is kept)"
    return "check the query flags and the URL"


@contextlib.contextmanager
def server_errors(url: str, what: str) -> Iterator[None]:
    """Turn network and HTTP failures of ``what`` (e.g. "the study search") into one-line ``DataError``s."""
    import requests

    shown = shown_url(url)
    try:
        yield
    except requests.exceptions.HTTPError as exc:
        response = exc.response
        status = response.status_code if response is not None else 0
        reason = response.reason if response is not None else ""
        raise DataError(f"the DICOMweb server {shown} answered HTTP {status} {reason} to {what}; "
                        f"{_http_hint(status)}") from None
    except requests.exceptions.Timeout:
        raise DataError(f"the DICOMweb server {shown} did not answer {what} in time; check that it is up "
                        "and not overloaded, then rerun (what was retrieved is kept)") from None
    except requests.exceptions.ConnectionError as exc:
        cause = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
        raise DataError(f"cannot reach the DICOMweb server {shown} ({cause}); check the URL and that the "
                        "server is running and reachable from this machine") from None
    except requests.exceptions.RequestException as exc:
        raise DataError(f"request to the DICOMweb server {shown} failed during {what}: "
                        f"{type(exc).__name__}; check the URL") from None
    except ValueError as exc:  # dicomweb-client: invalid UIDs, undecodable answers (not a DICOMweb server)
        raise DataError(f"the answer of {shown} to {what} is not valid DICOMweb ({type(exc).__name__}); "
                        "check that the URL is the server's DICOMweb root") from None


@contextlib.contextmanager
def quiet_client_log() -> Iterator[None]:
    """dicomweb-client and urllib3 log URLs with their query (a patient id) at DEBUG, dicomweb-client
    UIDs and highdicom its every step at INFO: keep them to warnings while we work."""
    loggers = [logging.getLogger(name) for name in ("dicomweb_client", "highdicom", "urllib3.connectionpool")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # highdicom logs each copied module of the source file at INFO
        logger.setLevel(max(logger.level, logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _value(item: dict[str, Any], tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or [""]
    return str(values[0]).strip()


def _search_all(search: Callable[..., list[dict[str, Any]]], tag: str, **kwargs: Any) -> set[str]:
    """Every ``tag`` value a QIDO-RS search answers, page by page (``PAGE_SIZE`` per request).

    Stops at a short page, or at a page that brings nothing new: some servers (Orthanc 1.10 with
    ``ModalitiesInStudy``) ignore ``offset`` and answer the same page forever.
    """
    found: set[str] = set()
    offset = 0
    while True:
        page = search(limit=PAGE_SIZE, offset=offset, **kwargs)
        values = {_value(item, tag) for item in page} - {""}
        new = values - found
        found |= values
        if len(page) < PAGE_SIZE or not new:
            return found
        offset += len(page)


def find_instances(client: "DICOMwebClient", url: str, query: DicomwebQuery) -> list[InstanceRef]:
    """Every instance of the matching studies (only series of ``query.modality`` when given), sorted.

    Raises ``DataError`` when nothing matches or the server fails.
    """
    with server_errors(url, "the study search (QIDO-RS)"):
        studies = _search_all(client.search_for_studies, STUDY_UID, search_filters=query.study_filters())
    refs: set[InstanceRef] = set()
    series_filters = {"Modality": query.modality} if query.modality else {}
    for study in sorted(studies):
        with server_errors(url, "the series search (QIDO-RS)"):
            series_uids = _search_all(client.search_for_series, SERIES_UID, study_instance_uid=study,
                                      search_filters=series_filters)
        for series in sorted(series_uids):
            with server_errors(url, "the instance search (QIDO-RS)"):
                sops = _search_all(client.search_for_instances, SOP_UID, study_instance_uid=study,
                                   series_instance_uid=series)
            refs.update(InstanceRef(study, series, sop) for sop in sops)
    if not refs:
        raise DataError(f"no instance on {shown_url(url)} matches {query.describe()}; check the filters "
                        "(dates as YYYY-MM-DD, modality as in the PACS, e.g. CT)")
    return sorted(refs, key=lambda r: (r.study, r.series, r.sop))
