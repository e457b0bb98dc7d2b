"""The append-only audit trail, the state of a case derived from it, and the decisions.

Every decision (confirm / dismiss / assign_class), note, undo, claim and release is one row in
``review_events``; nothing is ever updated or deleted. The current state of a case is computed
from its events by :func:`derive_state`: decisions stack up, an undo removes the decision it
points at, and the top of the stack is the case's status and label.

Every append goes through medssl.review.chain (the hash chain). Writers on one case hold its
``cases`` row (``FOR UPDATE`` on PostgreSQL), so concurrent undos each undo a different decision
or are refused, and a claim check and the write it guards are one atomic step.

Claims (medssl.review.claims): only the reviewer who holds an unexpired claim on a case may
decide it or undo a decision on it; when nobody holds one, the decision or undo takes it in the
same transaction. A decision releases the claim; a decision over another reviewer's standing
decision needs ``override=True`` (both stay in the trail).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import Connection, Engine, select

from medssl.review.chain import append_event
from medssl.review.claims import (  # noqa: F401 (re-exported: medssl.review.events was their home)
    CLAIM_MINUTES, active_claims, active_claims_detail, case_row, check_reviewer, claim_case, drop, hold,
    refuse_if_claimed_by_other, release_case, release_claims,
)
from medssl.review.errors import ClaimError, OverrideError, ReviewError
from medssl.review.models import ReviewEvent
from medssl.review.nul_text import has_nul, refuse_nul

ACTIONS: tuple[str, ...] = ("claim", "release", "confirm", "dismiss", "assign_class", "undo", "note")
DECISIONS: tuple[str, ...] = ("confirm", "dismiss", "assign_class")
STATUSES: tuple[str, ...] = ("open", "confirmed", "dismissed", "labelled")
_STATUS_OF = {"confirm": "confirmed", "dismiss": "dismissed", "assign_class": "labelled"}
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
    if has_nul(case_id):  # names no case (medssl.review.nul_text)
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            select(ReviewEvent).where(ReviewEvent.case_id == case_id).order_by(ReviewEvent.id)
        ).all()
    return [_event(r) for r in rows]


def case_states(engine: Engine, case_ids: Sequence[str] | None = None) -> dict[str, CaseState]:
    """Derived state of every case that has decision events (cases without any are "open")."""
    query = select(ReviewEvent).where(ReviewEvent.action.in_((*DECISIONS, "undo"))).order_by(ReviewEvent.id)
    if case_ids is not None:
        query = query.where(ReviewEvent.case_id.in_([c for c in case_ids if not has_nul(c)]))
    by_case: dict[str, list[Event]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            by_case.setdefault(row.case_id, []).append(_event(row))
    return {cid: derive_state(cid, evs) for cid, evs in by_case.items()}


def case_state(engine: Engine, case_id: str) -> CaseState:
    """Derived state of one case."""
    return derive_state(case_id, case_events(engine, case_id))


def _insert_event(conn: Connection, case_id: str, reviewer: str, action: str, *, label: str | None = None,
                  note: str | None = None, model_id: str | None = None, ref_event_id: int | None = None) -> int:
    return append_event(conn, case_id=case_id, reviewer=reviewer, action=action, label=label, note=note,
                        model_id=model_id, ref_event_id=ref_event_id)


def _locked_state(conn: Connection, case_id: str) -> CaseState:
    rows = conn.execute(select(ReviewEvent).where(ReviewEvent.case_id == case_id).order_by(ReviewEvent.id)).all()
    return derive_state(case_id, [_event(r) for r in rows])


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
                    label: str | None = None, note: str | None = None, override: bool = False,
                    require_claim: bool = False) -> int:
    """Append a decision event and return its id.

    ``action`` is confirm, dismiss or assign_class (which needs ``label``). The event carries the
    case's current ``model_id``.

    Claims: succeeds only if ``reviewer`` holds an unexpired claim on the case (it is released in
    the same transaction: a ``release`` event follows the decision) or nobody holds one (the locked
    case row is the claim for the transaction; no claim is left behind, so no claim or release
    event is written). Another reviewer's unexpired claim raises ``ClaimError`` naming the holder
    and until when.

    ``require_claim=True`` (the app's decision form) refuses with ``ClaimError`` unless ``reviewer``
    holds the claim, also when nobody does: a form that stayed open after the claim ran out, or a
    second click on Save after the first decision released the claim, records nothing.

    Overrides: when the case's standing decision is another reviewer's, ``OverrideError`` (saying
    who decided what, when) unless ``override=True``; the new decision is then appended on top and
    the earlier one stays in the trail.
    """
    if action not in DECISIONS:
        raise ReviewError(f"unknown decision {action!r}; use one of {', '.join(DECISIONS)}")
    label = label.strip() if label else None
    if action == "assign_class" and not label:
        raise ReviewError("assign_class needs a class label; type or pick the class for this case")
    if label and len(label) > LABEL_MAX_LENGTH:  # the column's width (PostgreSQL refuses longer text)
        raise ReviewError(f"the class label is {len(label)} characters long; use at most {LABEL_MAX_LENGTH}")
    note = note.strip() if note else None
    check_reviewer(reviewer)
    refuse_nul(label, "the class label")
    refuse_nul(note, "the note")
    with engine.begin() as conn:
        case = case_row(conn, case_id, lock=True)
        held = refuse_if_claimed_by_other(conn, case_id, reviewer, "decide")
        if require_claim and held is None:
            raise ClaimError(f"you no longer hold case {case_id!r} (a decision released the claim, or it ran out); "
                             "claim it again to record a decision")
        state = _locked_state(conn, case_id)
        if state.decided_by is not None and state.decided_by != reviewer and not override:
            raise OverrideError(case_id, state.decided_by, state.status, state.label, state.decided_at)
        if label is None:
            label = default_label(action, case.predicted_label)
        event_id = _insert_event(conn, case_id, reviewer, action, label=label, note=note, model_id=case.model_id)
        if held is not None:
            drop(conn, case, reviewer)
        return event_id


def add_note(engine: Engine, case_id: str, reviewer: str, note: str) -> int:
    """Append a free-text note to the case's trail; returns the event id. Any reviewer may add a
    note (a second opinion), claim or not: a note changes no decision."""
    if not note or not note.strip():
        raise ReviewError("the note is empty; type some text first")
    refuse_nul(note, "the note")
    check_reviewer(reviewer)
    with engine.begin() as conn:
        case = case_row(conn, case_id, lock=True)
        return _insert_event(conn, case_id, reviewer, "note", note=note.strip(), model_id=case.model_id)


def undo_last(engine: Engine, case_id: str, reviewer: str, decision_id: int | None = None,
              override: bool = False) -> int:
    """Undo the case's most recent standing decision with a new ``undo`` event; returns its id.

    Claims: succeeds only if ``reviewer`` holds an unexpired claim on the case (kept: they are
    working on it) or nobody holds one (``reviewer`` takes it in the same transaction, with a
    ``claim`` event before the undo); another reviewer's claim raises ``ClaimError``. Raises
    ``ReviewError`` when the case has no decision left to undo (nothing is written then), or when
    ``decision_id`` (the standing decision the caller showed, e.g. the app's page) is no longer the
    standing one: a second click on Undo does not undo an earlier decision as well.

    Overrides: undoing another reviewer's standing decision raises ``OverrideError`` unless
    ``override=True`` (as recording a decision over it does); the undo event keeps both in the trail.
    """
    check_reviewer(reviewer)
    with engine.begin() as conn:
        case = case_row(conn, case_id, lock=True)
        held = refuse_if_claimed_by_other(conn, case_id, reviewer, "undo")
        state = _locked_state(conn, case_id)
        if state.decision_event_id is None:
            raise ReviewError(f"case {case_id!r} has no decision to undo")
        if decision_id is not None and state.decision_event_id != decision_id:
            raise ReviewError(f"the decision shown for case {case_id!r} was already undone or replaced; "
                              "look at the case again before undoing")
        if state.decided_by is not None and state.decided_by != reviewer and not override:
            raise OverrideError(case_id, state.decided_by, state.status, state.label, state.decided_at, undo=True)
        if held is None:
            hold(conn, case, reviewer)
        return _insert_event(conn, case_id, reviewer, "undo", model_id=case.model_id,
                             ref_event_id=state.decision_event_id)
