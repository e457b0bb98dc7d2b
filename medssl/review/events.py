"""The append-only audit trail, the state of a case derived from it, and claims.

Every decision (confirm / dismiss / assign_class), note, undo, claim and release is one row in
``review_events``; nothing is ever updated or deleted. The current state of a case is computed
from its events by :func:`derive_state`: decisions stack up, an undo removes the decision it
points at, and the top of the stack is the case's status and label.

Every append goes through medssl.review.chain (the hash chain). Writers on one case hold its
``cases`` row (``FOR UPDATE`` on PostgreSQL), so concurrent undos each undo a different decision
or are refused.

Claims: a reviewer claims a case for ``CLAIM_MINUTES`` so that two reviewers do not work the same
one. :func:`claim_case` is atomic: of two reviewers claiming at once, exactly one wins.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import Connection, Engine, and_, or_, select
from sqlalchemy.exc import IntegrityError

from medssl.review.chain import append_event
from medssl.review.errors import ClaimError, ReviewError
from medssl.review.models import Case, Claim, ReviewEvent, utcnow

ACTIONS: tuple[str, ...] = ("claim", "release", "confirm", "dismiss", "assign_class", "undo", "note")
DECISIONS: tuple[str, ...] = ("confirm", "dismiss", "assign_class")
STATUSES: tuple[str, ...] = ("open", "confirmed", "dismissed", "labelled")
_STATUS_OF = {"confirm": "confirmed", "dismiss": "dismissed", "assign_class": "labelled"}
CLAIM_MINUTES = 30
LABEL_MAX_LENGTH = 128  # review_events.label
ANOMALY_LABEL = "anomaly"
NORMAL_LABEL = "normal"


@dataclass(frozen=True)
class Event:
    """One row of ``review_events``."""

    id: int
    case_id: str
    reviewer: str
    action: str
    label: str | None
    note: str | None
    model_id: str | None
    ref_event_id: int | None
    created_at: dt.datetime


@dataclass(frozen=True)
class CaseState:
    """The current state of one case, derived from its events."""

    case_id: str
    status: str  # one of STATUSES
    label: str | None
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_event_id: int | None


def derive_state(case_id: str, events: Iterable[Event]) -> CaseState:
    """Fold ``events`` (any order; sorted by id here) into the case's current state."""
    active: list[Event] = []
    for ev in sorted(events, key=lambda e: e.id):
        if ev.action in DECISIONS:
            active.append(ev)
        elif ev.action == "undo":
            active = [d for d in active if d.id != ev.ref_event_id]
    if not active:
        return CaseState(case_id, "open", None, None, None, None)
    top = active[-1]
    return CaseState(case_id, _STATUS_OF[top.action], top.label, top.reviewer, top.created_at, top.id)


def _event(row: ReviewEvent) -> Event:
    return Event(
        row.id, row.case_id, row.reviewer, row.action, row.label, row.note, row.model_id,
        row.ref_event_id, row.created_at,
    )


def case_events(engine: Engine, case_id: str) -> list[Event]:
    """Every event of ``case_id``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(ReviewEvent).where(ReviewEvent.case_id == case_id).order_by(ReviewEvent.id)
        ).all()
    return [_event(r) for r in rows]


def case_states(engine: Engine, case_ids: Sequence[str] | None = None) -> dict[str, CaseState]:
    """Derived state of every case that has decision events (cases without any are "open")."""
    query = select(ReviewEvent).where(ReviewEvent.action.in_((*DECISIONS, "undo"))).order_by(ReviewEvent.id)
    if case_ids is not None:
        query = query.where(ReviewEvent.case_id.in_(list(case_ids)))
    by_case: dict[str, list[Event]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            by_case.setdefault(row.case_id, []).append(_event(row))
    return {cid: derive_state(cid, evs) for cid, evs in by_case.items()}


def case_state(engine: Engine, case_id: str) -> CaseState:
    """Derived state of one case."""
    return derive_state(case_id, case_events(engine, case_id))


def _case_row(conn: Connection, case_id: str, lock: bool = False) -> Case:
    """The case's row; ``lock``: hold it until the transaction ends (PostgreSQL ``FOR UPDATE``:
    concurrent writers on one case queue, so each undo sees the undos committed before it; SQLite's
    BEGIN IMMEDIATE already serializes every writer)."""
    query = select(Case).where(Case.case_id == case_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise ReviewError(
            f"case {case_id!r} is not in the review store; import its score file first "
            "(`medssl app --scores SCORES_PARQUET`)"
        )
    return row


def _insert_event(conn: Connection, case_id: str, reviewer: str, action: str, *, label: str | None = None,
                  note: str | None = None, model_id: str | None = None, ref_event_id: int | None = None) -> int:
    return append_event(conn, case_id=case_id, reviewer=reviewer, action=action, label=label, note=note,
                        model_id=model_id, ref_event_id=ref_event_id)


def _claim_holder(conn: Connection, case_id: str, now: dt.datetime) -> str | None:
    row = conn.execute(
        select(Claim.reviewer).where(Claim.case_id == case_id, Claim.expires_at > now)
    ).first()
    return row.reviewer if row else None


def claim_case(engine: Engine, case_id: str, reviewer: str, minutes: int = CLAIM_MINUTES) -> bool:
    """Claim ``case_id`` for ``reviewer`` for ``minutes``; ``False`` if someone else holds it.

    Atomic on SQLite (BEGIN IMMEDIATE) and PostgreSQL (conditional UPDATE, then INSERT that loses
    to a concurrent INSERT on the primary key). Re-claiming one's own case extends it.
    """
    now = utcnow()
    expires = now + dt.timedelta(minutes=minutes)
    with engine.begin() as conn:
        case = _case_row(conn, case_id, lock=True)
        updated = conn.execute(
            Claim.__table__.update()
            .where(and_(Claim.case_id == case_id, or_(Claim.reviewer == reviewer, Claim.expires_at <= now)))
            .values(reviewer=reviewer, expires_at=expires)
        ).rowcount
        if updated != 1:
            try:
                with conn.begin_nested():
                    conn.execute(Claim.__table__.insert().values(case_id=case_id, reviewer=reviewer, expires_at=expires))
            except IntegrityError:
                return False
        _insert_event(conn, case_id, reviewer, "claim", model_id=case.model_id)
    return True


def release_case(engine: Engine, case_id: str, reviewer: str) -> bool:
    """Give up ``reviewer``'s claim on ``case_id``; ``False`` if they did not hold it."""
    with engine.begin() as conn:
        case = _case_row(conn, case_id, lock=True)
        deleted = conn.execute(
            Claim.__table__.delete().where(Claim.case_id == case_id, Claim.reviewer == reviewer)
        ).rowcount
        if deleted:
            _insert_event(conn, case_id, reviewer, "release", model_id=case.model_id)
    return bool(deleted)


def active_claims(engine: Engine) -> dict[str, str]:
    """``{case_id: reviewer}`` for every unexpired claim."""
    with engine.connect() as conn:
        rows = conn.execute(select(Claim.case_id, Claim.reviewer).where(Claim.expires_at > utcnow())).all()
    return {r.case_id: r.reviewer for r in rows}


def default_label(action: str, predicted_label: str | None) -> str | None:
    """The label a decision implies when the reviewer gives none.

    confirm: the model's predicted label (or "anomaly" for a model without a classifier head);
    dismiss: "normal" for a model without a head, else no label (a false alarm says nothing about
    the class; use assign_class to give one).
    """
    if action == "confirm":
        return predicted_label if predicted_label is not None else ANOMALY_LABEL
    if action == "dismiss":
        return NORMAL_LABEL if predicted_label is None else None
    return None


def record_decision(engine: Engine, case_id: str, reviewer: str, action: str,
                    label: str | None = None, note: str | None = None) -> int:
    """Append a decision event and return its id.

    ``action`` is confirm, dismiss or assign_class (which needs ``label``). The event carries the
    case's current ``model_id``. Refused (``ClaimError``) while another reviewer holds the case.
    """
    if action not in DECISIONS:
        raise ReviewError(f"unknown decision {action!r}; use one of {', '.join(DECISIONS)}")
    label = label.strip() if label else None
    if action == "assign_class" and not label:
        raise ReviewError("assign_class needs a class label; type or pick the class for this case")
    if label and len(label) > LABEL_MAX_LENGTH:  # the column's width (PostgreSQL refuses longer text)
        raise ReviewError(f"the class label is {len(label)} characters long; use at most {LABEL_MAX_LENGTH}")
    note = note.strip() if note else None
    with engine.begin() as conn:
        case = _case_row(conn, case_id, lock=True)
        holder = _claim_holder(conn, case_id, utcnow())
        if holder is not None and holder != reviewer:
            raise ClaimError(f"case {case_id!r} is claimed by {holder}; pick another case or ask them to release it")
        if label is None:
            label = default_label(action, case.predicted_label)
        return _insert_event(conn, case_id, reviewer, action, label=label, note=note, model_id=case.model_id)


def add_note(engine: Engine, case_id: str, reviewer: str, note: str) -> int:
    """Append a free-text note to the case's trail; returns the event id."""
    if not note or not note.strip():
        raise ReviewError("the note is empty; type some text first")
    with engine.begin() as conn:
        case = _case_row(conn, case_id, lock=True)
        return _insert_event(conn, case_id, reviewer, "note", note=note.strip(), model_id=case.model_id)


def undo_last(engine: Engine, case_id: str, reviewer: str) -> int:
    """Undo the case's most recent standing decision with a new ``undo`` event; returns its id.

    Raises ``ReviewError`` when the case has no decision left to undo.
    """
    with engine.begin() as conn:
        case = _case_row(conn, case_id, lock=True)
        rows = conn.execute(
            select(ReviewEvent).where(ReviewEvent.case_id == case_id).order_by(ReviewEvent.id)
        ).all()
        state = derive_state(case_id, [_event(r) for r in rows])
        if state.decision_event_id is None:
            raise ReviewError(f"case {case_id!r} has no decision to undo")
        return _insert_event(conn, case_id, reviewer, "undo", model_id=case.model_id,
                             ref_event_id=state.decision_event_id)
