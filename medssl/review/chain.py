"""The audit trail's hash chain: every event stores the previous event's hash and its own,
``hash = sha256(prev_hash + canonical content)``; the first event's ``prev_hash`` is ``GENESIS``.

Editing, removing or re-ordering any event breaks the chain at that event or the next one, and
:func:`verify_chain` (``medssl audit verify``) names the first broken link. Appends are serialized
so that the chain stays a single line under concurrent writers: on SQLite every transaction already
holds the write lock (``BEGIN IMMEDIATE``, see medssl.review.db); on PostgreSQL :func:`append_event`
takes a transaction-level advisory lock first.

The hash is not keyed: someone who can rewrite the whole table can also recompute every hash
after the edit. Keep the head hash that ``medssl audit verify`` prints somewhere else (a ticket, a
log shipped off the machine) to detect that too. What the chain does not show: events removed from
the end (compare the count and head with the copy kept elsewhere).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import Connection, Engine, select, text

from medssl.review.models import ReviewEvent, utcnow

GENESIS = "0" * 64
# key of the PostgreSQL advisory lock that serializes appends ("medssl" as a 64-bit number)
_PG_CHAIN_LOCK = int.from_bytes(b"medssl\x00\x01", "big")
HASHED_FIELDS: tuple[str, ...] = (
    "id", "case_id", "reviewer", "action", "label", "note", "model_id", "ref_event_id", "created_at",
)


def canonical(event: dict[str, Any]) -> bytes:
    """The bytes hashed for one event: its ``HASHED_FIELDS`` as a compact JSON list
    (``created_at`` as ISO 8601 with microseconds)."""
    values = []
    for name in HASHED_FIELDS:
        value = event[name]
        if isinstance(value, dt.datetime):
            value = value.isoformat(timespec="microseconds")
        values.append(value)
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_hash(prev_hash: str, event: dict[str, Any]) -> str:
    """``sha256(prev_hash + canonical(event))`` as 64 hex digits."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(event)).hexdigest()


def lock_chain(conn: Connection) -> None:
    """Serialize appends until the transaction ends (PostgreSQL; SQLite's BEGIN IMMEDIATE does it)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_CHAIN_LOCK})


def _next_id(conn: Connection, head_id: int) -> int:
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text("SELECT nextval(pg_get_serial_sequence('review_events', 'id'))")).scalar_one())
    return head_id + 1


def append_event(conn: Connection, **fields: Any) -> int:
    """Insert one event (``case_id, reviewer, action`` and optional ``label, note, model_id,
    ref_event_id``) at the head of the chain; returns its id."""
    lock_chain(conn)
    head = conn.execute(select(ReviewEvent.id, ReviewEvent.hash).order_by(ReviewEvent.id.desc()).limit(1)).first()
    head_id, prev_hash = (int(head.id), head.hash or GENESIS) if head else (0, GENESIS)
    event = {name: fields.get(name) for name in HASHED_FIELDS}
    event["id"] = _next_id(conn, head_id)
    event["created_at"] = utcnow()
    conn.execute(ReviewEvent.__table__.insert().values(**event, prev_hash=prev_hash, hash=event_hash(prev_hash, event)))
    return event["id"]


def seal_rows(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """``[{id, prev_hash, hash}]`` chaining ``rows`` (events in id order) from ``GENESIS``: used to
    seal the events of a store written by a medssl without the chain (see append_only)."""
    out, prev = [], GENESIS
    for row in rows:
        h = event_hash(prev, {name: getattr(row, name) for name in HASHED_FIELDS})
        out.append({"id": row.id, "prev_hash": prev, "hash": h})
        prev = h
    return out


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_chain` found: ``n_events`` checked, the ``head`` hash, and the first
    broken link (``broken_at`` event id and ``problem``), or ``None`` for both when intact."""

    n_events: int
    head: str
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain(engine: Engine) -> ChainReport:
    """Walk every event in id order and recompute the chain; stops at the first broken link."""
    prev_hash, prev_id, n = GENESIS, None, 0
    query = select(ReviewEvent).order_by(ReviewEvent.id).execution_options(yield_per=2000)
    with engine.connect() as conn:
        for row in conn.execute(query):
            n += 1
            after = "the first event" if prev_id is None else f"event {prev_id}"
            if row.hash is None or row.prev_hash is None:
                return ChainReport(n, prev_hash, row.id, "it has no hash: it was written outside medssl")
            if row.prev_hash != prev_hash:
                return ChainReport(n, prev_hash, row.id, f"its prev_hash {row.prev_hash[:12]}... does not match the hash "
                                   f"of {after} ({prev_hash[:12]}...): an event before it was removed, "
                                   "inserted or edited")
            expected = event_hash(prev_hash, {name: getattr(row, name) for name in HASHED_FIELDS})
            if row.hash != expected:
                return ChainReport(n, prev_hash, row.id, f"its content does not match its hash (stored {row.hash[:12]}..., "
                                   f"content gives {expected[:12]}...): the event was edited after it was written")
            prev_hash, prev_id = row.hash, row.id
    return ChainReport(n, prev_hash)
