"""``medssl users add NAME --role ROLE [--password-stdin]`` and ``medssl users list``."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from pathlib import Path

from medssl.review.constants import DB_ENV, DEFAULT_DB_FILE, MIN_PASSWORD_LENGTH, ROLES
from medssl.review.errors import UserError

log = logging.getLogger(__name__)

DB_HELP = (
    "review store (accounts, queue, decisions) as a database URL: sqlite:///path/review.db or "
    f"postgresql+psycopg://user@host/dbname. Default: ${DB_ENV} if set, else the file "
    f"{DEFAULT_DB_FILE} in the current folder (created on first use). Give `medssl users` and "
    "`medssl app` the same store"
)


def review_store_url(db: str | None) -> str:
    """The review store a command uses: ``--db``, else ``$MEDSSL_DB``, else the default file.

    A store the user did not name on the command line is logged. Creating the default file
    (``medssl_review.db`` in the current folder) is a warning, so that running from another
    folder never starts a second, empty store unnoticed.
    """
    if db:
        return db
    if os.environ.get(DB_ENV):
        url = os.environ[DB_ENV]
        log.info("review store: %s (from $%s)", _without_password(url), DB_ENV)
        return url
    path = Path.cwd() / DEFAULT_DB_FILE
    if not path.exists():
        log.warning("no --db given: creating the review store %s (the default: %s in the current folder; "
                    "pass --db URL or set %s to use another)", path, DEFAULT_DB_FILE, DB_ENV)
    else:
        log.info("review store: %s (the default; pass --db URL or set %s to use another)", path, DB_ENV)
    return f"sqlite:///{path}"


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # malformed: make_engine says so in its own error
        return url


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``users`` with ``add`` and ``list``."""
    parser = subparsers.add_parser(
        "users",
        help="create and list reviewer accounts for the review app",
        description="Reviewer accounts for `medssl app`. Clinicians review flagged cases; data "
        "scientists and admins may also fine-tune models from the review decisions.",
    )
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="users_action", metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="create an account (asks for the password twice, or reads one line from stdin)",
        description="Create a reviewer account. The password is stored only as an argon2 hash.",
    )
    add.add_argument("name", help="sign-in name: printable characters, no spaces (e.g. dr_lee)")
    add.add_argument("--role", required=True, choices=ROLES,
                     help="clinician: review cases; data_scientist: also fine-tune; admin: everything")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin (for scripts) instead of asking")
    add.add_argument("--db", default=None, help=DB_HELP)
    add.set_defaults(func=run_add)
    lst = actions.add_parser("list", help="print every account and its role",
                             description="Print every reviewer account, its role and creation time.")
    lst.add_argument("--db", default=None, help=DB_HELP)
    lst.set_defaults(func=run_list)


def _stdin_password() -> str:
    """The first line of stdin as text; ``UserError`` for bytes that are not UTF-8 or for control
    characters (binary input would otherwise end in a traceback, or in a password nobody can type)."""
    stream = getattr(sys.stdin, "buffer", None)
    try:
        line = stream.readline().decode("utf-8") if stream is not None else sys.stdin.readline()
    except UnicodeDecodeError:
        raise UserError("--password-stdin: the first line of stdin is not UTF-8 text; pipe in the password as text") from None
    password = line.rstrip("\r\n")
    if not password.isprintable():
        raise UserError("--password-stdin: the password holds control characters (e.g. NUL or escape); "
                        "use printable characters only")
    return password


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return _stdin_password()
    try:
        first = getpass.getpass(f"Password (at least {MIN_PASSWORD_LENGTH} characters): ")
        again = getpass.getpass("Repeat the password: ")
    except EOFError:  # no terminal to ask on (a script, CI): say how to pass it instead
        raise UserError("no password was typed (no terminal to ask on); pipe it in with --password-stdin") from None
    if again != first:
        raise UserError("the two passwords differ; run the command again")
    return first


def run_add(args: argparse.Namespace) -> int:
    """Create the account; prints its name and role (never the password)."""
    from medssl.review import add_user, make_engine

    password = _read_password(args.password_stdin)
    account = add_user(make_engine(review_store_url(args.db)), args.name, args.role, password)
    print(f"created reviewer {account.name} ({account.role})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print the accounts as a small table."""
    from medssl.review import list_users, make_engine

    accounts = list_users(make_engine(review_store_url(args.db)))
    print(f"{'name':<24} {'role':<16} created_at")
    for acc in accounts:
        print(f"{acc.name:<24} {acc.role:<16} {acc.created_at:%Y-%m-%d %H:%M} UTC")
    return 0
