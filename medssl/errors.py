"""Domain errors. Each message says what is wrong and how to fix it.

The CLI turns any ``MedsslError`` into one line on stderr and a non-zero exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MedsslError(Exception):
    """Base class of every error a user can cause and fix."""

    exit_code: int = 2


class ConfigError(MedsslError):
    """A config file or flag is invalid (unknown key, wrong type, bad value)."""


class DataError(MedsslError):
    """Input data is missing, malformed or inconsistent (a bad manifest, a missing column)."""


class ReaderError(DataError):
    """One input file could not be read. Ingest records these in errors.csv and goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class LabelError(DataError):
    """Labels are missing, unknown, single-class, or fewer than asked for."""


class CheckpointError(MedsslError):
    """A checkpoint or model file is not a medssl file, is corrupt, or was tampered with."""


class UnknownNameError(MedsslError, KeyError):
    """A name looked up in a registry does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0]) if self.args else ""
