"""The review store's engine: a SQLite file (WAL, busy timeout) by default, PostgreSQL by URL.

SQLite notes: every transaction starts with ``BEGIN IMMEDIATE`` so that a read-then-write
transaction (claim a case, undo the last decision) holds the write lock from its first statement.
Concurrent writers then queue on the busy timeout instead of failing with "database is locked",
and no decision is lost. WAL lets readers run while one writer writes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError

from medssl.errors import ConfigError
from medssl.review.constants import DB_ENV, DEFAULT_DB_FILE

log = logging.getLogger(__name__)
BUSY_TIMEOUT_S = 30.0


def default_db_url() -> str:
    """``$MEDSSL_DB`` if set, else a SQLite file ``medssl_review.db`` in the working directory."""
    return os.environ.get(DB_ENV) or f"sqlite:///{Path.cwd() / DEFAULT_DB_FILE}"


def _create_private_file(path: Path) -> None:
    """Create a new store file readable by its owner only (0600; SQLite gives its -wal/-shm/-journal
    files the same mode). An existing file is not opened here: closing any descriptor of a SQLite
    file drops every lock this process holds on it (other threads' connections), which corrupts it."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass


def _make_private(path: Path) -> None:
    """Make an existing store (and companion files) that others may read private: stat and chmod only."""
    for file in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        try:
            info = file.stat()
            if info.st_mode & 0o077 and info.st_uid == os.geteuid():
                os.chmod(file, 0o600)
                log.warning("review store file %s was readable by other users; made it private (0600)", file)
        except FileNotFoundError:
            continue


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" hook issue BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _driver_missing(url: str, drivername: str, module: str | None, use: str) -> ConfigError:
    """The one line for a URL whose database driver is not installed: which URL medssl supports instead."""
    return ConfigError(f"--db {url!r}: the database driver for {drivername!r} is not installed ({module}); "
                       f"the review store runs on SQLite or on PostgreSQL through psycopg: use {use}")


def make_engine(url: str | None = None) -> Engine:
    """An engine for ``url`` (default: :func:`default_db_url`) with the tables created.

    ``sqlite:///path/review.db`` (parent folder created; the file is made readable by its owner
    only, 0600) or ``postgresql+psycopg://user@host/db``
    (needs the ``postgres`` extra). A malformed, unknown or unusable URL raises ``ConfigError``.
    """
    import medssl.review.label_requests  # noqa: F401  defines the label_requests table on Base
    from medssl.review.models import create_tables

    url = url or default_db_url()
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"--db {url!r} is not a database URL; use e.g. sqlite:///review.db or "
            "postgresql+psycopg://user@host/dbname"
        ) from None
    shown = parsed.render_as_string(hide_password=True)  # error lines never echo a password
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"--db {url!r}: cannot create the folder {folder} ({exc.strerror})") from None
            try:
                _create_private_file(Path(parsed.database).expanduser())
            except IsADirectoryError:
                pass  # SQLite says so in the one error line below
            except OSError as exc:
                raise ConfigError(f"--db {url!r}: cannot create the store file ({exc.strerror})") from None
        try:
            engine = create_engine(
                parsed, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
            )
        except ModuleNotFoundError as exc:
            raise _driver_missing(shown, parsed.drivername, exc.name, "sqlite:///path/review.db") from None
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        try:
            engine = create_engine(parsed, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            if exc.name == "psycopg":
                raise ConfigError(f"--db {shown!r}: the PostgreSQL driver psycopg is not installed; "
                                  "pip install 'medssl[postgres]'") from None
            raise _driver_missing(shown, parsed.drivername, exc.name,
                                  "postgresql+psycopg://user@host/dbname (pip install 'medssl[postgres]')") from None
        except NoSuchModuleError:
            raise ConfigError(
                f"--db {shown!r}: unknown database kind {parsed.drivername!r}; use sqlite:///path/review.db "
                "or postgresql+psycopg://user@host/dbname"
            ) from None
    try:
        create_tables(engine)
    except DatabaseError as exc:  # cannot connect, or the file is not a SQLite database
        reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        raise ConfigError(f"--db {engine.url!r} cannot be used as the review store: {reason}") from None
    if engine.dialect.name == "sqlite" and parsed.database and parsed.database != ":memory:":
        _make_private(Path(parsed.database).expanduser())  # a valid store now: never a stranger's file
    return engine
