"""Tables of the review store.

- ``users``: reviewer accounts (argon2 password hashes only, never a clear password).
- ``cases``: one row per scored case (the latest score imported for it, with its "why flagged"
  ``explanation`` when the score file has one).
- ``review_events``: the append-only audit trail, hash-chained (medssl.review.chain). Database
  triggers (medssl.review.append_only) refuse UPDATE, DELETE, REPLACE/UPSERT and TRUNCATE; an undo
  is a new event pointing at the one it undoes.
- ``claims``: which reviewer currently works a case, until when (a lock, not history; every
  claim and release is also written to ``review_events``).
- ``login_attempts``: sign-in successes and failures, for the login throttle.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Boolean, DateTime, Engine, Float, ForeignKey, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    """Current UTC time without tzinfo (stored as UTC in every backend)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of the review store."""


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(256), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class Case(Base):
    __tablename__ = "cases"

    case_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(256), index=True, nullable=False)
    domain: Mapped[str] = mapped_column(String(32), index=True, nullable=False)
    data_dir: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float, index=True, nullable=False)
    percentile: Mapped[float] = mapped_column(Float, nullable=False)
    flagged: Mapped[bool] = mapped_column(Boolean, index=True, nullable=False)
    predicted_label: Mapped[str | None] = mapped_column(String(128))
    predicted_proba: Mapped[float | None] = mapped_column(Float)
    model_id: Mapped[str] = mapped_column(String(64), nullable=False)
    scored_at: Mapped[str | None] = mapped_column(String(64))
    explanation: Mapped[str | None] = mapped_column(Text)  # why it was flagged (medssl.scoring.explain)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class ReviewEvent(Base):
    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), index=True, nullable=False)
    reviewer: Mapped[str] = mapped_column(String(64), nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    label: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[str | None] = mapped_column(String(64))
    ref_event_id: Mapped[int | None] = mapped_column(Integer)  # the event an undo undoes
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    # hash chain (medssl.review.chain): hash = sha256(prev_hash + this event's content); NULL only
    # for a row written outside medssl, which `medssl audit verify` reports
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class Claim(Base):
    __tablename__ = "claims"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), primary_key=True)
    reviewer: Mapped[str] = mapped_column(String(64), nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)


class LoginAttempt(Base):
    """One sign-in attempt (the throttle of medssl.review.throttle counts failures since the last success)."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True, nullable=False)
    address: Mapped[str | None] = mapped_column(String(64), index=True)
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)


class RegisteredModel(Base):
    """A fine-tuned model a data scientist registered for the nightly scoring job."""

    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True, nullable=False)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    registered_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class SessionSecret(Base):
    """The store's key for signing sign-in tokens (medssl.review.sessions); one row, never sent out."""

    __tablename__ = "session_secrets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    secret: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class RevokedSession(Base):
    """A sign-in token given up by signing out (medssl.review.sessions), kept until it expires."""

    __tablename__ = "revoked_sessions"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    revoked_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


# key of the PostgreSQL advisory lock held while one process creates or upgrades the tables
_PG_SCHEMA_LOCK = int.from_bytes(b"medssl\x00\x02", "big")


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """One process at a time checks, creates and upgrades the tables. PostgreSQL: a session
    advisory lock (processes opening a new store at once otherwise both created a table or a
    trigger, and one failed); SQLite: each step's BEGIN IMMEDIATE already serializes them."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_SCHEMA_LOCK})
            conn.commit()


def create_tables(engine: Engine) -> None:
    """Create any missing table; then bring the audit trail's guards up to date
    (:func:`medssl.review.append_only.install_guards`: hash columns, triggers). Safe when several
    processes open a new store at once."""
    from medssl.review.append_only import install_guards

    with _schema_lock(engine):
        Base.metadata.create_all(engine)
        _add_case_columns(engine)
        install_guards(engine)


def _add_case_columns(engine: Engine) -> None:
    """Add the ``cases`` columns a store made by an older medssl lacks (``explanation``)."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    with engine.connect() as conn:
        if "explanation" in {c["name"] for c in inspect(conn).get_columns("cases")}:
            return
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE cases ADD COLUMN explanation TEXT")
    except DBAPIError as exc:
        raise owner_upgrade_error(exc, engine, "a new column (cases.explanation)") from None


def owner_upgrade_error(exc: Exception, engine: Engine, what: str) -> Exception:
    """The error for a store upgrade (``what``) the connected role may not make: a ``ConfigError``
    saying to run it once as the tables' owner when the database refused the privilege, else ``exc``."""
    from medssl.errors import ConfigError

    if getattr(getattr(exc, "orig", None), "sqlstate", None) != "42501":  # insufficient_privilege
        return exc
    return ConfigError(
        f"the review store {engine.url.render_as_string(hide_password=True)} was made by an older medssl and needs "
        f"{what}, which only the tables' owner may add: run `medssl audit verify --db URL_OF_THE_OWNER_ROLE` once, "
        "then use the app role again")
