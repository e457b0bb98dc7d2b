"""Login throttling: a growing wait after repeated failed sign-ins, per account and per address.

Every attempt is a row of ``login_attempts`` (so the throttle survives an app restart and holds
across app servers sharing one store). Counting:

- an account: its failures since its last successful sign-in;
- an address: its failures in the last ``ADDRESS_WINDOW`` (a success does not reset it, so one
  valid account cannot be used to keep guessing another's password).

After ``FREE_FAILURES`` (account) or ``FREE_ADDRESS_FAILURES`` (address) failures, each further
attempt must wait ``BASE_DELAY_S * 2 ** (extra failures)`` seconds after the last failure, at most
``MAX_DELAY_S``. An attempt made while waiting is refused without checking the password (and is
not counted). ``now`` is a parameter everywhere, so tests pass a clock instead of sleeping.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, Engine, func, select

from medssl.review.errors import UserError
from medssl.review.models import LoginAttempt, utcnow
from medssl.review.nul_text import without_nul

FREE_FAILURES = 5
FREE_ADDRESS_FAILURES = 20
BASE_DELAY_S = 2.0
MAX_DELAY_S = 15 * 60.0
ADDRESS_WINDOW = dt.timedelta(hours=1)
_NAME_LENGTH = 64


class ThrottledError(UserError):
    """Too many failed sign-ins: the message says when to try again."""

    def __init__(self, message: str, retry_at: dt.datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


def delay_after(failures: int, free: int = FREE_FAILURES) -> float:
    """Seconds to wait after the last of ``failures`` consecutive failures (0 while within ``free``)."""
    if failures < free:
        return 0.0
    return min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** (failures - free))


def _account_failures(conn: Connection, name: str) -> tuple[int, dt.datetime | None]:
    last_ok = (select(func.max(LoginAttempt.id)).where(LoginAttempt.name == name, LoginAttempt.ok.is_(True))
               .scalar_subquery())
    row = conn.execute(select(func.count(), func.max(LoginAttempt.at)).where(
        LoginAttempt.name == name, LoginAttempt.ok.is_(False), LoginAttempt.id > func.coalesce(last_ok, 0))).one()
    return int(row[0]), row[1]


def _address_failures(conn: Connection, address: str, now: dt.datetime) -> tuple[int, dt.datetime | None]:
    row = conn.execute(select(func.count(), func.max(LoginAttempt.at)).where(
        LoginAttempt.address == address, LoginAttempt.ok.is_(False), LoginAttempt.at > now - ADDRESS_WINDOW)).one()
    return int(row[0]), row[1]


def check_allowed(engine: Engine, name: str, address: str | None, now: dt.datetime | None = None) -> None:
    """Raise ``ThrottledError`` (saying when to retry) if ``name`` or ``address`` must still wait."""
    now = now or utcnow()
    name, address = without_nul(name), without_nul(address) if address else address
    waits: list[dt.datetime] = []
    with engine.connect() as conn:
        n, last = _account_failures(conn, name[:_NAME_LENGTH])
        if last is not None and delay_after(n):
            waits.append(last + dt.timedelta(seconds=delay_after(n)))
        if address:
            n, last = _address_failures(conn, address[:_NAME_LENGTH], now)
            if last is not None and delay_after(n, FREE_ADDRESS_FAILURES):
                waits.append(last + dt.timedelta(seconds=delay_after(n, FREE_ADDRESS_FAILURES)))
    retry_at = max(waits, default=now)
    if retry_at > now:
        seconds = int((retry_at - now).total_seconds() + 0.999)
        raise ThrottledError(f"Too many failed sign-ins: try again after {retry_at:%H:%M:%S} UTC (in {seconds} s).",
                             retry_at)


def record_attempt(engine: Engine, name: str, address: str | None, ok: bool, now: dt.datetime | None = None) -> None:
    """Append one attempt (the name as typed, cut to 64 characters; a NUL stored as U+FFFD)."""
    name, address = without_nul(name), without_nul(address) if address else address
    with engine.begin() as conn:
        conn.execute(LoginAttempt.__table__.insert().values(
            name=name[:_NAME_LENGTH], address=address[:_NAME_LENGTH] if address else None, ok=ok, at=now or utcnow()))
