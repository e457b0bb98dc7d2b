"""Labelling requests ("Label next"): cases a data scientist asked the reviewers to label first.

Table ``label_requests`` (defined here on the review store's ``Base``; ``medssl.review.db``
imports this module before it creates the tables): one row per requested case, who asked, when,
with which model's predictions, and why. Requesting a case that is already requested adds
nothing (``case_id`` is unique), so pressing the button twice is harmless. A request never
touches ``review_events``: decisions are neither changed nor lost; a requested case leaves the
"Label next" list as soon as a reviewer decides it (its derived status is no longer "open").
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Mapping, Sequence

import pandas as pd
from sqlalchemy import DateTime, Engine, Integer, String, Text, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from medssl.review.errors import ReviewError
from medssl.review.events import case_states
from medssl.review.models import Base, Case, utcnow
from medssl.review.queue import QueuePage, count_cases, list_queue

REQUEST_COLUMNS = ("case_id", "requested_by", "requested_at", "model_id", "reason", "rank")


class LabelRequest(Base):
    """One case sent to the review queue as a labelling task (idempotent: one row per case)."""

    __tablename__ = "label_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # no foreign key to cases: request_labels checks the ids, and a key would change why PostgreSQL
    # refuses the app role a TRUNCATE of cases (tests/test_review_postgres.py)
    case_id: Mapped[str] = mapped_column(String(256), unique=True, nullable=False)
    requested_by: Mapped[str] = mapped_column(String(64), nullable=False)
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    model_id: Mapped[str | None] = mapped_column(String(64))  # whose predictions ranked the case
    reason: Mapped[str | None] = mapped_column(Text)
    rank: Mapped[int] = mapped_column(Integer, nullable=False)  # order within its request (1 = first)


def request_labels(engine: Engine, case_ids: Sequence[str], requested_by: str,
                   reasons: Mapping[str, str] | None = None) -> int:
    """Record ``case_ids`` (in the order given) as labelling requests by ``requested_by``.

    Cases already requested are left as they are; cases that already carry a standing decision are
    skipped (there is nothing left to label). Returns the number of new requests. Raises
    ``ReviewError`` naming case ids that are not in the review store (import their score file first).
    """
    ids = list(dict.fromkeys(str(c) for c in case_ids))
    if not ids:
        return 0
    with engine.connect() as conn:
        known = {r[0]: r[1] for r in conn.execute(select(Case.case_id, Case.model_id).where(Case.case_id.in_(ids)))}
    unknown = [c for c in ids if c not in known]
    if unknown:
        raise ReviewError(f"{len(unknown)} case id(s) are not in the review store ({', '.join(map(repr, unknown[:5]))}); "
                          "import their score file first (`medssl app --scores`)")
    states = case_states(engine, ids)
    decided = {c for c, s in states.items() if s.status != "open"}
    now = utcnow()
    rows = [{"case_id": c, "requested_by": requested_by, "requested_at": now, "model_id": known[c],
             "reason": (reasons or {}).get(c), "rank": i + 1}
            for i, c in enumerate(c for c in ids if c not in decided)]
    if not rows:
        return 0
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(LabelRequest.__table__).on_conflict_do_nothing(index_elements=["case_id"])
    with engine.begin() as conn:
        before = conn.execute(select(func.count()).select_from(LabelRequest)).scalar_one()
        conn.execute(stmt, rows)
        after = conn.execute(select(func.count()).select_from(LabelRequest)).scalar_one()
    return int(after - before)


def label_requests(engine: Engine) -> pd.DataFrame:
    """Every labelling request, oldest first: ``REQUEST_COLUMNS`` (one row per case)."""
    with engine.connect() as conn:
        rows = conn.execute(select(*[getattr(LabelRequest, c) for c in REQUEST_COLUMNS])
                            .order_by(LabelRequest.requested_at, LabelRequest.rank, LabelRequest.id)).all()
    return pd.DataFrame(rows, columns=list(REQUEST_COLUMNS))


def label_next_queue(engine: Engine, *, domain: str | None = None, patient: str | None = None,
                     page: int = 1, page_size: int = 25) -> QueuePage:
    """The requested cases that are still undecided (status "open"), in the order they were
    requested (oldest request first, then its rank), paged like :func:`list_queue`.

    Rows hold ``list_queue``'s columns (flagged or not) plus ``requested_by`` and ``requested_at``.
    """
    if page_size < 1:
        raise ReviewError("page size must be at least 1")
    requests = label_requests(engine)
    # every open case (one page holding them all), then the requested ones among them
    rows = list_queue(engine, domain=domain, status="open", patient=patient, flagged_only=False,
                      page=1, page_size=max(1, count_cases(engine))).rows
    order = {c: i for i, c in enumerate(requests["case_id"])}
    rows = rows[rows["case_id"].isin(order)].copy()
    rows["request_order"] = rows["case_id"].map(order)
    rows = rows.sort_values("request_order", kind="stable").drop(columns="request_order")
    info = requests.set_index("case_id")
    rows["requested_by"] = rows["case_id"].map(info["requested_by"])
    rows["requested_at"] = rows["case_id"].map(info["requested_at"])
    total = len(rows)
    n_pages = max(1, math.ceil(total / page_size))
    page = min(max(1, page), n_pages)
    return QueuePage(rows=rows.iloc[(page - 1) * page_size: page * page_size].reset_index(drop=True),
                     total=total, page=page, n_pages=n_pages)
