"""Reviewer accounts: argon2id password hashes (argon2-cffi), roles, and which pages a role sees.

Passwords are hashed on arrival and never stored, logged or echoed in clear.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from medssl.review.constants import DATA_SCIENCE_ROLES, MIN_PASSWORD_LENGTH, NAME_MAX_LENGTH, ROLES  # noqa: F401
from medssl.review.errors import UserError
from medssl.review.models import User, utcnow
from medssl.review.nul_text import has_nul
from medssl.review.throttle import check_allowed, record_attempt

log = logging.getLogger(__name__)


_HASHER = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("medssl-no-such-user")


@dataclass(frozen=True)
class Account:
    """A reviewer as the app sees it (no password hash)."""

    name: str
    role: str
    created_at: dt.datetime

    @property
    def can_fine_tune(self) -> bool:
        """Data scientists and admins may use the fine-tune and embedding-map pages."""
        return self.role in DATA_SCIENCE_ROLES


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    return role


def add_user(engine: Engine, name: str, role: str, password: str) -> Account:
    """Create account ``name`` with ``role``; the password is stored as an argon2id hash only.

    Raises ``UserError`` for an empty/long name or one with spaces or unprintable characters
    (e.g. terminal escape sequences), an unknown role, a short password or a taken name.
    """
    name = name.strip()
    if not name or len(name) > NAME_MAX_LENGTH or any(c.isspace() for c in name) or not name.isprintable():
        raise UserError(f"reviewer name must be 1-{NAME_MAX_LENGTH} printable characters without spaces "
                        f"(no control or terminal escape characters), got {name!r}")
    _check_role(role)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    password_hash = _HASHER.hash(password)
    try:
        with engine.begin() as conn:
            conn.execute(
                User.__table__.insert().values(
                    name=name, role=role, password_hash=password_hash, created_at=utcnow()
                )
            )
    except IntegrityError:
        raise UserError(f"a reviewer called {name!r} already exists; pick another name") from None
    log.info("added reviewer account with role %s", role)
    return get_user(engine, name)


def get_user(engine: Engine, name: str) -> Account:
    """The account called ``name``; ``UserError`` if there is none."""
    row = None
    if not has_nul(name):  # no account name holds one (add_user refuses unprintable names)
        with engine.connect() as conn:
            row = conn.execute(select(User.name, User.role, User.created_at).where(User.name == name)).first()
    if row is None:
        raise UserError(f"no reviewer called {name!r}; create it with `medssl users add {name} --role ROLE`")
    return Account(name=row.name, role=row.role, created_at=row.created_at)


def list_users(engine: Engine) -> list[Account]:
    """Every account, by name (code-point order on every backend, not the database's collation)."""
    with engine.connect() as conn:
        rows = conn.execute(select(User.name, User.role, User.created_at)).all()
    return [Account(name=r.name, role=r.role, created_at=r.created_at) for r in sorted(rows, key=lambda r: r.name)]


def authenticate(engine: Engine, name: str, password: str, address: str | None = None,
                 now: dt.datetime | None = None) -> Account | None:
    """The account if ``password`` matches ``name``'s hash, else ``None`` (no hint which was wrong).

    Throttled (medssl.review.throttle): after repeated failures for the account or for ``address``
    (the client's address, when known) raises ``ThrottledError`` saying when to try again, without
    checking the password. Every checked attempt is recorded; ``now`` (UTC) is for tests.
    """
    name = name.strip()
    now = now or utcnow()
    check_allowed(engine, name, address, now)
    row = None
    if not has_nul(name):  # no account name holds one; the dummy hash is still verified below
        with engine.connect() as conn:
            row = conn.execute(select(User).where(User.name == name)).first()
    stored = row.password_hash if row is not None else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password)
        ok = row is not None
    except (VerificationError, InvalidHashError):
        ok = False
    record_attempt(engine, name, address, ok, now)
    if not ok:
        log.info("failed sign-in")
        return None
    if _HASHER.check_needs_rehash(stored):
        with engine.begin() as conn:
            conn.execute(
                User.__table__.update().where(User.id == row.id).values(password_hash=_HASHER.hash(password))
            )
    return Account(name=row.name, role=row.role, created_at=row.created_at)
