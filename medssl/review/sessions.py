"""Signed, expiring sign-in tokens, so that a browser refresh does not sign a reviewer out.

After a successful sign-in the app puts a token in the page's URL (``?session=TOKEN``); on a
fresh page load it restores the account from it. The password never reaches the browser again.

A token is ``NAME_B64.EXPIRES.TOKEN_ID.SIGNATURE``: the account name (URL-safe base64), the
expiry (Unix seconds, UTC), a random token id, and HMAC-SHA256 over the three with the store's
secret. The secret is a random 256-bit key kept server-side in the ``session_secrets`` table
(created on first use, never rotated: deleting the row signs everyone out). A token is valid
while its signature matches, it has not expired (``SESSION_HOURS`` after sign-in), it was not
revoked (signing out writes its id to ``revoked_sessions``) and its account still exists.

A token is bound to the browser that signed in: the signature also covers ``bound_to`` (the app
passes the client's address and User-Agent), which the token does not carry. The same URL opened
on another machine or in another browser (a link pasted into a message with ``?session=`` still
in it) is refused there, so sharing a case link never shares a sign-in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from medssl.review.errors import UserError
from medssl.review.models import RevokedSession, SessionSecret, utcnow
from medssl.review.users import Account, get_user

SESSION_HOURS = 8  # a sign-in lasts one working shift; then the reviewer signs in again
_EPOCH = dt.datetime(1970, 1, 1)


def _insert(engine: Engine):  # noqa: ANN202 (a dialect's insert construct)
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def _secret(engine: Engine) -> bytes:
    """The store's signing key; made on first use (of two processes making it at once, one wins)."""
    query = select(SessionSecret.secret).where(SessionSecret.id == 1)
    with engine.connect() as conn:
        found = conn.execute(query).scalar_one_or_none()
    if found is None:
        with engine.begin() as conn:
            conn.execute(_insert(engine)(SessionSecret.__table__).values(
                id=1, secret=secrets.token_hex(32), created_at=utcnow()).on_conflict_do_nothing())
            found = conn.execute(query).scalar_one()
    return bytes.fromhex(found)


def _sign(key: bytes, payload: str, bound_to: str) -> str:
    message = payload.encode() + b"\x00" + hashlib.sha256(bound_to.encode()).digest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def issue_token(engine: Engine, name: str, hours: float = SESSION_HOURS, now: dt.datetime | None = None,
                bound_to: str = "") -> str:
    """A token for account ``name`` valid ``hours`` from ``now`` (naive UTC; default the clock),
    accepted only where :func:`account_for_token` is given the same ``bound_to``."""
    expires = int(((now or utcnow()) - _EPOCH).total_seconds() + hours * 3600)
    name_b64 = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    payload = f"{name_b64}.{expires}.{secrets.token_hex(16)}"
    return f"{payload}.{_sign(_secret(engine), payload, bound_to)}"


def _parts(engine: Engine, token: str, bound_to: str) -> tuple[str, dt.datetime, str] | None:
    """``(name, expires_at, token_id)`` of a well-formed token with a valid signature, else ``None``."""
    pieces = token.split(".") if isinstance(token, str) else []
    if len(pieces) != 4 or not pieces[1].isdigit() or len(pieces[1]) > 12:
        return None
    payload = ".".join(pieces[:3])
    if not hmac.compare_digest(_sign(_secret(engine), payload, bound_to), pieces[3]):
        return None
    try:
        name = base64.urlsafe_b64decode(pieces[0] + "=" * (-len(pieces[0]) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return name, _EPOCH + dt.timedelta(seconds=int(pieces[1])), pieces[2]


def account_for_token(engine: Engine, token: str, now: dt.datetime | None = None,
                      bound_to: str = "") -> Account | None:
    """The account a token signs in, or ``None`` when it is malformed, tampered with, expired,
    revoked, issued for another ``bound_to`` (another browser), or its account no longer exists."""
    parts = _parts(engine, token, bound_to)
    if parts is None:
        return None
    name, expires_at, token_id = parts
    if expires_at <= (now or utcnow()):
        return None
    with engine.connect() as conn:
        if conn.execute(select(RevokedSession.token_id).where(RevokedSession.token_id == token_id)).first():
            return None
    try:
        return get_user(engine, name)
    except UserError:
        return None


def revoke_token(engine: Engine, token: str, bound_to: str = "") -> bool:
    """Revoke a valid token (sign-out); ``False`` for one that was never valid here. Idempotent."""
    parts = _parts(engine, token, bound_to)
    if parts is None:
        return False
    _, expires_at, token_id = parts
    with engine.begin() as conn:
        conn.execute(_insert(engine)(RevokedSession.__table__).values(
            token_id=token_id, expires_at=expires_at, revoked_at=utcnow()).on_conflict_do_nothing())
    return True
