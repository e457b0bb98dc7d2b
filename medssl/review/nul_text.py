"""Text with a NUL character (``"\\x00"``): PostgreSQL's text types cannot hold one (psycopg raises
``DataError`` for it in any parameter, also of a plain SELECT); SQLite's can. The review store
treats it alike on both backends, never as a database error:

- an id or name with a NUL (a deep link ``?case=a%00b``, a pasted patient id) names nothing in the
  store: lookups check :func:`has_nul` first and find nothing;
- a class label or note with one is refused in one line (:func:`refuse_nul`), nothing written;
- a score file with one is refused before import (medssl.review.score_checks);
- the login throttle records a sign-in name or address with each NUL replaced (:func:`without_nul`),
  so such attempts are counted like any other failure.
"""

from __future__ import annotations

from medssl.review.errors import ReviewError

NUL = "\x00"
REPLACEMENT = "\ufffd"


def has_nul(value: object) -> bool:
    """Whether ``value`` is a str holding a NUL character."""
    return isinstance(value, str) and NUL in value


def without_nul(value: str) -> str:
    """``value`` with each NUL replaced by U+FFFD (the replacement character)."""
    return value.replace(NUL, REPLACEMENT)


def refuse_nul(value: str | None, what: str) -> None:
    """``ReviewError`` naming ``what`` (e.g. "the note") when ``value`` holds a NUL character."""
    if has_nul(value):
        raise ReviewError(f"{what} contains a NUL character (\\x00), which the review store cannot keep; "
                          "remove it and save again")
