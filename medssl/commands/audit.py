"""``medssl audit verify [--db URL]``, ``medssl audit grants --app-role ROLE`` and ``medssl audit
export --out FILE.csv|FILE.parquet [--db URL] [--overwrite]``: the review store's audit trail
(append-only, hash-chained; see medssl.review.chain) and every decision in it as a table."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from medssl.commands.users import DB_HELP, review_store_url
from medssl.errors import ConfigError
from medssl.review.errors import ReviewError

log = logging.getLogger(__name__)


class AuditError(ReviewError):
    """The audit trail's hash chain is broken (an event was edited, removed or forged)."""

    exit_code = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``audit`` with ``verify``, ``grants`` and ``export``."""
    parser = subparsers.add_parser(
        "audit",
        help="check the review store's audit trail (hash chain) or print the app role's grants",
        description="The review decisions are an append-only audit trail: each event stores the hash "
        "of the event before it and of its own content. `verify` recomputes the chain; `grants` prints "
        "the SQL that lets a PostgreSQL app role use the store without being able to rewrite it.",
    )
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="audit_action", metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="recompute the hash chain; exit 0 when intact, 3 naming the first broken link",
        description="Recompute every event's hash in order. Prints `audit trail OK: N events` and the "
        "head hash (keep a copy elsewhere: it also reveals a rewrite of the whole chain), or names the "
        "first event whose link is broken and exits 3. Opening a store made by an older medssl as its "
        "owner upgrades it (hash columns, triggers) first.",
    )
    verify.add_argument("--db", default=None, help=DB_HELP)
    verify.set_defaults(func=run_verify)
    grants = actions.add_parser(
        "grants", help="print the GRANT statements for the PostgreSQL role the app connects as",
        description="Print the SQL the owner role runs once so that the app role can review (read, "
        "append events, import scores, claim) but not update, delete or truncate events, nor disable "
        "the triggers (it owns no table). See README: Review store: roles and audit.",
    )
    grants.add_argument("--app-role", required=True, help="name of the app's PostgreSQL role, e.g. medssl_app")
    grants.set_defaults(func=run_grants)
    export = actions.add_parser(
        "export", help="write every review decision (who, when, model, note, standing or not) as CSV or Parquet",
        description="Write one row per decision event (confirm, dismiss, assign_class) with columns case_id, "
        "patient_id, domain, decision, label, reviewer, time (UTC ISO-8601), model_id, note, outcome "
        "(standing, overridden or undone), undone_by, undone_at. The format follows --out's suffix "
        "(.csv or .parquet). For the fine-tune's labels CSV (case_id,label) use the app's labels download.",
    )
    export.add_argument("--db", default=None, help=DB_HELP)
    export.add_argument("--out", required=True, type=Path, help="file to write: FILE.csv or FILE.parquet")
    export.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    export.set_defaults(func=run_export)


def run_verify(args: argparse.Namespace) -> int:
    """Verify the chain; ``AuditError`` (exit 3) names the first broken link."""
    from medssl.review import make_engine
    from medssl.review.chain import verify_chain

    report = verify_chain(make_engine(review_store_url(args.db)))
    if not report.ok:
        raise AuditError(f"audit trail broken at event {report.broken_at} (event {report.n_events} in order): "
                         f"{report.problem}")
    print(f"audit trail OK: {report.n_events} events (head {report.head})")
    return 0


def run_grants(args: argparse.Namespace) -> int:
    """Print one statement per line, ready for ``psql``."""
    from medssl.review.append_only import app_role_grants

    for statement in app_role_grants(args.app_role):
        print(statement + ";")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write the decisions table; ``ConfigError`` for a wrong suffix or an existing file without --overwrite."""
    from medssl.review import export_decisions, make_engine
    from medssl.review.export import EXPORT_SUFFIXES

    if args.out.suffix.lower() not in EXPORT_SUFFIXES:
        raise ConfigError(f"--out {args.out}: end the file name in .csv or .parquet (the format follows the suffix)")
    if args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a folder; give a file path, e.g. {args.out / 'decisions.csv'}")
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"--out {args.out} exists; choose another path, or pass --overwrite to replace it")
    n = export_decisions(make_engine(review_store_url(args.db)), args.out)
    print(f"wrote {n} decisions to {args.out}")
    return 0
