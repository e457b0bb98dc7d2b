"""Claims: which reviewer works a case, until when.

A reviewer claims a case for ``CLAIM_MINUTES`` so that two reviewers do not work the same one.
The ``claims`` table is a lock, not history: every claim and release is also an event in
``review_events``. A claim whose ``expires_at`` has passed is released by expiry: it no longer
counts anywhere, and the next claimant takes the row over.

The rule the review store keeps (medssl.review.events): a decision or an undo succeeds only for
the reviewer who holds an unexpired claim on the case, or when nobody holds one (the call then
takes the claim in its own transaction); another reviewer's unexpired claim raises
:class:`~medssl.review.errors.ClaimError`, naming the holder and until when. A decision releases
the decider's claim; an undo keeps (or takes) it.

Every writer on one case first locks the case's row (:func:`case_row` with ``lock=True``: ``FOR
UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serializes every writer), so a claim
check and the write that depends on it are one atomic step. The lock order on PostgreSQL, which
keeps writers from deadlocking: case rows first (several of them in case id order: sign-out,
score import), then the hash chain's advisory lock (medssl.review.chain) when an event is appended.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, Engine, and_, or_, select
from sqlalchemy.exc import IntegrityError

from medssl.review.chain import append_event
from medssl.review.constants import NAME_MAX_LENGTH
from medssl.review.errors import ClaimError, ReviewError
from medssl.review.models import Case, Claim, utcnow
from medssl.review.nul_text import has_nul

CLAIM_MINUTES = 30


def case_row(conn: Connection, case_id: str, lock: bool = False) -> Case:
    """The case's row; ``lock``: hold it until the transaction ends (PostgreSQL ``FOR UPDATE``:
    concurrent writers on one case queue, so each sees what the ones before it committed; SQLite's
    BEGIN IMMEDIATE already serializes every writer). ``ReviewError`` for an unknown case."""
    query = select(Case).where(Case.case_id == case_id)
    row = None if has_nul(case_id) else conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise ReviewError(
            f"case {case_id!r} is not in the review store; import its score file first "
            "(`medssl app --scores SCORES_PARQUET`)"
        )
    return row


def check_reviewer(reviewer: str) -> str:
    """``reviewer`` if the store can keep it as a reviewer name on every backend (1-64 characters,
    no NUL: PostgreSQL refuses longer or NUL text, SQLite kept it); else ``ReviewError``."""
    if not isinstance(reviewer, str) or not 1 <= len(reviewer) <= NAME_MAX_LENGTH or has_nul(reviewer):
        raise ReviewError(f"reviewer name must be 1-{NAME_MAX_LENGTH} characters without NUL, got {str(reviewer)[:80]!r}; "
                          "use the reviewer's account name")
    return reviewer


def claim_holder(conn: Connection, case_id: str, now: dt.datetime | None = None) -> tuple[str, dt.datetime] | None:
    """``(reviewer, expires_at UTC)`` of the unexpired claim on ``case_id``, or ``None``."""
    row = conn.execute(
        select(Claim.reviewer, Claim.expires_at).where(Claim.case_id == case_id, Claim.expires_at > (now or utcnow()))
    ).first()
    return (row.reviewer, row.expires_at) if row else None


def claim_until(expires_at: dt.datetime, now: dt.datetime | None = None) -> str:
    """``"until 14:05 UTC (12 min left)"`` for a claim that ends at ``expires_at`` (naive UTC;
    minutes left rounded up)."""
    left = max(0, -int(-(expires_at - (now or utcnow())).total_seconds() // 60))
    return f"until {expires_at:%H:%M} UTC ({left} min left)"


def claim_text(holder: str, expires_at: dt.datetime, now: dt.datetime | None = None) -> str:
    """``"dr_lee until 14:05 UTC (12 min left)"``."""
    return f"{holder} {claim_until(expires_at, now)}"


def refuse_if_claimed_by_other(conn: Connection, case_id: str, reviewer: str, doing: str) -> tuple[str, dt.datetime] | None:
    """Raise ``ClaimError`` when someone other than ``reviewer`` holds an unexpired claim on
    ``case_id``; else return the claim (``reviewer``'s own) or ``None``. ``doing``: "decide", "undo"."""
    held = claim_holder(conn, case_id)
    if held is not None and held[0] != reviewer:
        raise ClaimError(
            f"case {case_id!r} is claimed by {claim_text(*held)}: only they can {doing} it; "
            "pick another case, wait for the claim to end or ask them to release it"
        )
    return held


def hold(conn: Connection, case: Case, reviewer: str, minutes: int = CLAIM_MINUTES) -> bool:
    """Inside a transaction that locked ``case``'s row: give ``reviewer`` the claim for ``minutes``
    (a new claim, their own extended, or an expired one taken over) and append a ``claim`` event;
    ``False`` (nothing written) when another reviewer holds an unexpired claim."""
    now = utcnow()
    expires = now + dt.timedelta(minutes=minutes)
    updated = conn.execute(
        Claim.__table__.update()
        .where(and_(Claim.case_id == case.case_id, or_(Claim.reviewer == reviewer, Claim.expires_at <= now)))
        .values(reviewer=reviewer, expires_at=expires)
    ).rowcount
    if updated != 1:
        try:
            with conn.begin_nested():
                conn.execute(Claim.__table__.insert().values(case_id=case.case_id, reviewer=reviewer, expires_at=expires))
        except IntegrityError:
            return False
    append_event(conn, case_id=case.case_id, reviewer=reviewer, action="claim", label=None, note=None,
                 model_id=case.model_id, ref_event_id=None)
    return True


def drop(conn: Connection, case: Case, reviewer: str) -> bool:
    """Inside a transaction that locked ``case``'s row: delete ``reviewer``'s claim row on it and,
    if that claim had not expired, append a ``release`` event. ``True`` when an unexpired claim
    was released."""
    live = claim_holder(conn, case.case_id)
    deleted = conn.execute(
        Claim.__table__.delete().where(Claim.case_id == case.case_id, Claim.reviewer == reviewer)
    ).rowcount
    if deleted and live is not None and live[0] == reviewer:
        append_event(conn, case_id=case.case_id, reviewer=reviewer, action="release", label=None, note=None,
                     model_id=case.model_id, ref_event_id=None)
        return True
    return False


def claim_case(engine: Engine, case_id: str, reviewer: str, minutes: int = CLAIM_MINUTES) -> bool:
    """Claim ``case_id`` for ``reviewer`` for ``minutes``; ``False`` if someone else holds it.

    Atomic on SQLite (BEGIN IMMEDIATE) and PostgreSQL (the case row locked, a conditional UPDATE,
    then an INSERT that loses to a concurrent INSERT on the primary key). Re-claiming one's own
    case extends it; an expired claim is taken over.
    """
    check_reviewer(reviewer)
    with engine.begin() as conn:
        return hold(conn, case_row(conn, case_id, lock=True), reviewer, minutes)


def release_case(engine: Engine, case_id: str, reviewer: str) -> bool:
    """Give up ``reviewer``'s claim on ``case_id``; ``False`` if they held no unexpired claim."""
    with engine.begin() as conn:
        return drop(conn, case_row(conn, case_id, lock=True), reviewer)


def release_claims(engine: Engine, reviewer: str) -> int:
    """Release every claim ``reviewer`` holds (sign-out), one ``release`` event per unexpired
    claim, in one transaction; returns how many unexpired claims were released. The case rows are
    all locked (in case id order) before the first release is appended."""
    with engine.begin() as conn:
        case_ids = sorted(r[0] for r in conn.execute(select(Claim.case_id).where(Claim.reviewer == reviewer)))
        # every case row first, then the releases: appending takes the chain lock (PostgreSQL), and
        # waiting for a row while holding it deadlocked with a writer holding that row
        cases = [case_row(conn, c, lock=True) for c in case_ids]
        return sum(drop(conn, case, reviewer) for case in cases)


def active_claims(engine: Engine) -> dict[str, str]:
    """``{case_id: reviewer}`` for every unexpired claim."""
    return {c: who for c, (who, _) in active_claims_detail(engine).items()}


def active_claims_detail(engine: Engine) -> dict[str, tuple[str, dt.datetime]]:
    """``{case_id: (reviewer, expires_at)}`` for every unexpired claim (``expires_at``: naive UTC)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Claim.case_id, Claim.reviewer, Claim.expires_at).where(Claim.expires_at > utcnow())
        ).all()
    return {r.case_id: (r.reviewer, r.expires_at) for r in rows}


def case_claim(engine: Engine, case_id: str) -> tuple[str, dt.datetime] | None:
    """``(reviewer, expires_at UTC)`` of the unexpired claim on ``case_id``, or ``None``."""
    with engine.connect() as conn:
        return claim_holder(conn, case_id)
