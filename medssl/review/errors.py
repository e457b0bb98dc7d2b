"""Errors of the review store. Each message says what is wrong and how to fix it."""

from __future__ import annotations

from medssl.errors import MedsslError


class ReviewError(MedsslError):
    """A review-store request cannot be carried out (unknown case, bad action, bad label)."""


class UserError(ReviewError):
    """A reviewer account request is invalid (unknown role, duplicate name, weak password)."""


class ClaimError(ReviewError):
    """The case is claimed by another reviewer whose claim has not expired."""
