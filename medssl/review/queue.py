"""The review queue: import flagged cases from a score file; list, filter, sort and page them.

A score file (``medssl score`` output) has the columns in ``SCORE_COLUMNS``. Importing it
upserts one ``cases`` row per case (the latest score wins; re-importing a file changes nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy import Engine, Float, false, func, select
from sqlalchemy.dialects import postgresql, sqlite

from medssl.errors import DataError
from medssl.progress import progress
from medssl.review.errors import ReviewError
from medssl.review.claims import active_claims_detail
from medssl.review.events import STATUSES, case_states
from medssl.review.models import Case, utcnow
from medssl.review.nul_text import has_nul
from medssl.review.score_checks import check_scores
from medssl.scoring.parts import DATA_DIR_METADATA_KEY  # written by `medssl score`

SCORE_COLUMNS: tuple[str, ...] = (
    "case_id", "patient_id", "domain", "anomaly_score", "anomaly_percentile", "flagged",
    "predicted_label", "predicted_proba", "model_id", "scored_at",
)
_CHUNK = 500


def read_scores(path: str | Path) -> pd.DataFrame:
    """Read and check a score Parquet file; ``DataError`` names a missing file or column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"score file {path} does not exist; create it with `medssl score ... --out {path}`")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise DataError(f"{path} could not be read as Parquet ({exc}); re-run `medssl score`") from None
    missing = [c for c in SCORE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path} is not a medssl score file: it lacks column(s) {missing}")
    return df


def scores_data_dir(path: str | Path) -> Path | None:
    """The DATA_DIR the score file was computed from, if it says or sits next to a manifest."""
    path = Path(path)
    meta = pq.read_schema(path).metadata or {}
    if DATA_DIR_METADATA_KEY in meta:
        return Path(meta[DATA_DIR_METADATA_KEY].decode())
    if (path.parent / "manifest.parquet").is_file():
        return path.parent
    return None


def _opt_str(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value) else str(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def import_scores(engine: Engine, scores_path: str | Path, data_dir: str | Path | None = None) -> int:
    """Upsert every case of the score file into ``cases``; returns the number of rows read.

    Raises ``DataError`` (nothing imported) for a file :func:`check_scores` refuses (no rows,
    empty / repeated / too long ids, non-finite scores, a ``flagged`` that is not boolean) and
    ``ReviewError`` when a case id already names a different case (another domain or patient, or
    another data folder that still exists).

    ``data_dir`` (where the case's data can be read for the case view) defaults to
    :func:`scores_data_dir`.
    """
    df = read_scores(scores_path)
    check_scores(df, scores_path)
    data_dir = Path(data_dir) if data_dir is not None else scores_data_dir(scores_path)
    data_dir_text = str(data_dir.resolve()) if data_dir else None
    now = utcnow()
    records = [
        {
            "case_id": str(r.case_id), "patient_id": str(r.patient_id), "domain": str(r.domain),
            "data_dir": data_dir_text,
            "score": float(r.anomaly_score), "percentile": float(r.anomaly_percentile),
            "flagged": bool(r.flagged), "predicted_label": _opt_str(r.predicted_label),
            "predicted_proba": _opt_float(r.predicted_proba), "model_id": str(r.model_id),
            "scored_at": _opt_str(r.scored_at), "explanation": _opt_str(getattr(r, "explanation", None)),
            "imported_at": now,
        }
        for r in df.itertuples(index=False)
    ]
    _refuse_id_clashes(engine, records)
    # rows are upserted (locked) in case id order, the order sign-out (release_claims) locks them in:
    # in the file's order, two transactions could each hold a row the other waits for (PostgreSQL deadlock)
    records.sort(key=lambda r: r["case_id"])
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(Case.__table__)
    updatable = [c for c in records[0] if c != "case_id"] if records else []
    # one statement, compiled once, executed for many parameter sets (executemany): a multi-row
    # VALUES clause built per chunk spent most of the import compiling bind parameters
    stmt = stmt.on_conflict_do_update(index_elements=["case_id"], set_={c: getattr(stmt.excluded, c) for c in updatable})
    chunks = range(0, len(records), _CHUNK)
    with engine.begin() as conn:  # one transaction: a failure part-way imports nothing
        for start in progress(chunks, total=len(chunks), desc="import scores", unit="chunk"):
            conn.execute(stmt, records[start:start + _CHUNK])
    return len(records)


def _refuse_id_clashes(engine: Engine, records: list[dict[str, Any]]) -> None:
    """Refuse a score file whose case ids already name *other* cases in the store.

    Re-scoring the same cases (same domain and patient) updates them, also from a data folder
    that was moved (the old one no longer exists). But an id that the store holds for a different
    domain or patient, or for another data folder that is still there (e.g. two transaction files
    whose ids are both plain row numbers), would silently move earlier decisions onto another case.
    """
    clashes: list[str] = []
    for start in range(0, len(records), _CHUNK):
        batch = {r["case_id"]: r for r in records[start:start + _CHUNK]}
        query = select(Case.case_id, Case.domain, Case.patient_id, Case.data_dir).where(Case.case_id.in_(list(batch)))
        with engine.connect() as conn:
            for case_id, domain, patient_id, data_dir in conn.execute(query):
                new = batch[case_id]
                same_dir = (data_dir is None or new["data_dir"] is None or data_dir == new["data_dir"]
                            or not Path(data_dir).exists())  # the folder was moved: same cases
                if domain != new["domain"] or patient_id != new["patient_id"] or not same_dir:
                    clashes.append(case_id)
    if clashes:
        shown = ", ".join(repr(c) for c in clashes[:5]) + (f" and {len(clashes) - 5} more" if len(clashes) > 5 else "")
        raise ReviewError(
            f"{len(clashes)} case id(s) of this score file already belong to other cases in the review store "
            f"(different domain or patient, or another data folder that still exists): {shown}. Nothing was imported, so no decision can "
            "end up on the wrong case. Give the cases unique ids (e.g. `medssl ingest transactions --id-col`) "
            "or use a separate review store (--db)"
        )


@dataclass(frozen=True)
class QueuePage:
    """One page of the queue: ``rows`` (DataFrame), the total matching, and paging numbers."""

    rows: pd.DataFrame
    total: int
    page: int
    n_pages: int


QUEUE_COLUMNS = ("case_id", "patient_id", "domain", "score", "percentile", "domain_percentile",
                 "predicted_label", "predicted_proba", "model_id", "status", "label", "claimed_by",
                 "claimed_until")


def list_queue(engine: Engine, *, domain: str | None = None, status: str | None = None,
               patient: str | None = None, flagged_only: bool = True, page: int = 1,
               page_size: int = 25, reranked: pd.Series | None = None) -> QueuePage:
    """Cases, most anomalous first *within their domain*, filtered and paged (``page`` from 1).

    ``domain_percentile`` (0-100] is the share of the domain's imported cases (flagged or not)
    whose score is at most this case's: raw scores of different domains (and models) are on
    different scales (an ECG kNN distance of 50 vs an ICU one of 1.5), and the stored
    ``percentile`` is calibrated per model on its reference set, so neither is comparable across
    domains. The queue is sorted by ``domain_percentile``, then score, then case id (code-point
    order, the same on every backend).

    ``status`` is one of open / confirmed / dismissed / labelled (derived from the events);
    ``patient`` matches the patient id exactly. ``reranked`` (case_id -> score, from
    :func:`medssl.review.rerank.rerank_cases`) orders the queue by that score instead, best first,
    adds a ``reranked`` column and lets unflagged cases with a score in (feedback can raise them).
    Rows hold ``QUEUE_COLUMNS``; ``label``,
    ``claimed_by`` and ``claimed_until`` (naive UTC) are object columns holding ``None`` when empty
    (read them with :func:`medssl.review.queue_rows.row_text`, which also accepts NaN).
    """
    if status is not None and status not in STATUSES:
        raise ReviewError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    if page_size < 1:
        raise ReviewError("page size must be at least 1")
    ranked = select(
        Case.case_id, Case.patient_id, Case.domain, Case.score, Case.percentile,
        (func.cume_dist(type_=Float).over(partition_by=Case.domain, order_by=Case.score) * 100.0).label("domain_percentile"),
        Case.predicted_label, Case.predicted_proba, Case.model_id, Case.flagged,
    ).subquery()  # the rank is taken over every case of the domain, before any filter
    query = select(*[ranked.c[c] for c in QUEUE_COLUMNS[:9]], ranked.c.flagged)
    if flagged_only and reranked is None:
        query = query.where(ranked.c.flagged.is_(True))
    if domain:
        query = query.where(ranked.c.domain == domain)
    if patient:
        query = query.where(false() if has_nul(patient) else ranked.c.patient_id == patient)  # NUL: no id has one
    with engine.connect() as conn:
        df = pd.DataFrame(conn.execute(query).all(), columns=[*QUEUE_COLUMNS[:9], "flagged"])
    # ordered here, not by the database: ties are broken by case id in code-point order on every
    # backend (PostgreSQL would sort text by the server's collation, e.g. en_US ignoring case and punctuation)
    order = ["domain_percentile", "score", "case_id"]
    if reranked is not None:
        df["reranked"] = df["case_id"].map(reranked).astype(float)
        if flagged_only:
            df = df[df["flagged"].astype(bool) | df["reranked"].notna()]
        order = ["reranked", *order]
    df = df.drop(columns="flagged").sort_values(order, ascending=[False] * (len(order) - 1) + [True], kind="stable",
                                                na_position="last", ignore_index=True)
    states = case_states(engine, None)
    claims = active_claims_detail(engine)
    df["status"] = [states[c].status if c in states else "open" for c in df["case_id"]]
    # object columns keep None: pandas 3 would make [str, None] a str column holding NaN
    df["label"] = pd.Series([states[c].label if c in states else None for c in df["case_id"]], index=df.index, dtype=object)
    df["claimed_by"] = pd.Series([claims[c][0] if c in claims else None for c in df["case_id"]], index=df.index, dtype=object)
    df["claimed_until"] = pd.Series([claims[c][1] if c in claims else None for c in df["case_id"]], index=df.index, dtype=object)
    if status is not None:
        df = df[df["status"] == status]
    total = len(df)
    n_pages = max(1, math.ceil(total / page_size))
    page = min(max(1, page), n_pages)
    rows = df.iloc[(page - 1) * page_size: page * page_size].reset_index(drop=True)
    return QueuePage(rows=rows, total=total, page=page, n_pages=n_pages)


def domain_counts(engine: Engine, flagged_only: bool = True) -> dict[str, int]:
    """``{domain: number of (flagged) cases}``, by domain name."""
    query = select(Case.domain, func.count()).group_by(Case.domain).order_by(Case.domain)
    if flagged_only:
        query = query.where(Case.flagged.is_(True))
    with engine.connect() as conn:
        return {d: int(n) for d, n in conn.execute(query)}


def get_case(engine: Engine, case_id: str) -> dict[str, Any]:
    """The ``cases`` row of ``case_id`` as a dict; ``ReviewError`` if it was never imported."""
    row = None
    if not has_nul(case_id):  # a stored id never holds NUL (PostgreSQL refuses it even in a query)
        with engine.connect() as conn:
            row = conn.execute(select(Case).where(Case.case_id == case_id)).mappings().first()
    if row is None:
        raise ReviewError(f"case {case_id!r} is not in the review store; import its score file first")
    return dict(row)


def queue_domains(engine: Engine) -> list[str]:
    """Domains that have at least one imported case, sorted."""
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(Case.domain).group_by(Case.domain).order_by(Case.domain))]


def count_cases(engine: Engine) -> int:
    """Number of imported cases."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Case)).scalar_one())
