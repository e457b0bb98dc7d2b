"""Errors of the review store. Each message says what is wrong and how to fix it."""

from __future__ import annotations

from medssl.errors import MedsslError


class ReviewError(MedsslError):
    """A review-store request cannot be carried out (unknown case, bad action, bad label)."""


class UserError(ReviewError):
    """A reviewer account request is invalid (unknown role, duplicate name, weak password)."""


class ClaimError(ReviewError):
    """The case is claimed by another reviewer whose claim has not expired."""


class OverrideError(ReviewError):
    """The case's standing decision is another reviewer's: recording one over it, or undoing it,
    needs ``override=True`` (``undo`` says which was refused). ``decided_by``, ``status``, ``label``, ``decided_at`` (naive UTC) describe it."""

    def __init__(self, case_id: str, decided_by: str, status: str, label: str | None, decided_at: object,
                 undo: bool = False) -> None:
        self.case_id, self.decided_by, self.status, self.label, self.decided_at = case_id, decided_by, status, label, decided_at
        self.undo = undo
        what = status + (f" ({label})" if label else "")
        todo = "to undo it" if undo else "to record yours over it"
        super().__init__(
            f"{decided_by} already decided case {case_id!r}: {what} at {decided_at:%Y-%m-%d %H:%M} UTC; "
            f"{todo}, confirm the override (override=True); both stay in the audit trail"
        )
