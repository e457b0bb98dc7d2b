"""A real, throw-away PostgreSQL server for the review-store tests (initdb + pg_ctl in a temp dir,
listening on 127.0.0.1 on a free port). ``make postgres-deps`` installs Debian's postgresql.

initdb refuses to run as root: as root the server runs as the ``postgres`` user (which Debian's
package creates). Without binaries or a user to run them, the tests skip with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PgServer:
    """A running server: ``url(role, db)`` builds a psycopg URL for a role and database;
    ``data`` is its data directory (the files the server writes)."""

    port: int
    data: Path | None = None

    def url(self, role: str = "postgres", db: str = "postgres") -> str:
        return f"postgresql+psycopg://{role}@127.0.0.1:{self.port}/{db}"

    def conninfo(self, role: str = "postgres", db: str = "postgres") -> str:
        """A libpq connection string for a raw ``psycopg.connect`` (no SQLAlchemy, no medssl)."""
        return f"host=127.0.0.1 port={self.port} user={role} dbname={db}"

    def create_database(self, name: str, owner: str | None = None) -> str:
        """``CREATE DATABASE name`` (names are the tests' own ``[a-z0-9_]+``); returns its superuser URL."""
        _admin(self, f"CREATE DATABASE {name}" + (f" OWNER {owner}" if owner else ""))
        return self.url(db=name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending the connections the test left open (pools, child processes)."""
        _admin(self, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def ensure_role(self, role: str) -> None:
        """``CREATE ROLE role LOGIN`` unless it exists (one server is shared by a whole session)."""
        _admin(self, f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
                     f"THEN CREATE ROLE {role} LOGIN; END IF; END $$")


def _admin(server: PgServer, sql: str) -> None:
    import psycopg

    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(sql)


def start_server() -> Iterator[PgServer] | str:
    """A generator yielding a running server (stopped and removed after), or the reason there is none."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        return "no PostgreSQL binaries (pg_ctl) found; run `make postgres-deps` (root) to install them"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed; pip install -e '.[dev]'"
    prefix: list[str] = []
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as (initdb refuses root)"
        prefix = ["runuser", "-u", "postgres", "--"]
    return _run(bin_dir, prefix, user)


SERVER_TIME_ZONE = "Pacific/Chatham"  # UTC+12:45 (+13:45 in summer)
SERVER_COLLATION = "en-US"  # a hospital server's usual collation (ignores case and punctuation at first), not bytes


def _locale(initdb: Path) -> list[str]:
    """initdb options for a server that sorts text by ``SERVER_COLLATION``, as SQLite never does: the
    ICU provider (PostgreSQL 15+, no OS locale needed), else the OS locale en_US.UTF-8 where the
    machine has it, else none. Messages stay in C English."""
    help_text = subprocess.run([str(initdb), "--help"], capture_output=True, text=True).stdout
    if "--locale-provider" in help_text:
        return ["--locale=C", "--locale-provider=icu", f"--icu-locale={SERVER_COLLATION}"]
    found = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.lower().split()
    if "en_us.utf8" in found or "en_us.utf-8" in found:
        return ["--locale=en_US.UTF-8", "--lc-messages=C"]
    return []


def _run(bin_dir: Path, prefix: list[str], user) -> Iterator[PgServer]:
    root = Path(tempfile.mkdtemp(prefix="medssl-pg-"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    data, port = root / "data", _free_port()
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", *_locale(bin_dir / "initdb"), "--no-sync"], check=True, capture_output=True)
    # a time zone far from UTC: the store keeps naive UTC times and must never depend on the server's
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100 "
               f"-c TimeZone={SERVER_TIME_ZONE}")
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                    "-w", "start"], check=True, capture_output=True)
    try:
        yield PgServer(port, data)
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
