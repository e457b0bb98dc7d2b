"""Names of the review store that the command line needs before any database code is loaded
(``medssl --help`` must not import SQLAlchemy or hash a password)."""

from __future__ import annotations

DB_ENV = "MEDSSL_DB"  # environment variable holding the review database URL
DEFAULT_DB_FILE = "medssl_review.db"  # without --db or $MEDSSL_DB: this file in the current folder
ROLES: tuple[str, ...] = ("clinician", "data_scientist", "admin")
DATA_SCIENCE_ROLES: frozenset[str] = frozenset({"data_scientist", "admin"})
MIN_PASSWORD_LENGTH = 8
NAME_MAX_LENGTH = 64
