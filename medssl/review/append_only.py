"""Database guards that keep ``review_events`` append-only, and the upgrade of older stores.

SQLite (triggers fire on every connection, also a raw ``sqlite3`` one that never turned foreign
keys on):

- UPDATE and DELETE of an event are refused;
- INSERT of an event whose id exists is refused: ``INSERT OR REPLACE`` would otherwise delete the
  old row without firing the DELETE trigger, and an UPSERT would rewrite it;
- an event for a case that is not in ``cases`` is refused;
- deleting a case that has events, or changing its id, is refused (no orphaned events).

PostgreSQL: a row trigger refuses UPDATE and DELETE, a statement trigger refuses TRUNCATE (also a
``TRUNCATE cases CASCADE``), and the foreign key keeps events' cases. The table owner can still
``ALTER TABLE ... DISABLE TRIGGER``: the app must connect as a role that owns nothing and holds only
the grants of :func:`app_role_grants` (README: "Review store: roles and audit").

:func:`install_guards` runs on every ``make_engine``: it adds the hash-chain columns to a store
written by an older medssl (sealing its events into a chain, see medssl.review.chain) and creates
missing triggers. On PostgreSQL that needs the owner role; as the app role it only checks, and a
store that still needs the upgrade is one ``ConfigError`` saying which role to connect as once.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError

from medssl.review.chain import seal_rows
from medssl.review.models import ReviewEvent, owner_upgrade_error

MESSAGE = "review_events is append-only; record a new event (e.g. undo) instead"
_CASE_MESSAGE = "this case has review events (the audit trail keeps them); it cannot be deleted or renamed"

SQLITE_TRIGGERS: dict[str, str] = {
    "review_events_no_update": f"BEFORE UPDATE ON review_events BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    "review_events_no_delete": f"BEFORE DELETE ON review_events BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    "review_events_no_replace": (
        "BEFORE INSERT ON review_events WHEN EXISTS (SELECT 1 FROM review_events WHERE id = NEW.id) "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"),
    "review_events_case_exists": (
        "BEFORE INSERT ON review_events WHEN NOT EXISTS (SELECT 1 FROM cases WHERE case_id = NEW.case_id) "
        "BEGIN SELECT RAISE(ABORT, 'review event for a case that is not in cases'); END"),
    "cases_keep_events_on_delete": (
        "BEFORE DELETE ON cases WHEN EXISTS (SELECT 1 FROM review_events WHERE case_id = OLD.case_id) "
        f"BEGIN SELECT RAISE(ABORT, '{_CASE_MESSAGE}'); END"),
    "cases_keep_events_on_rename": (
        "BEFORE UPDATE OF case_id ON cases WHEN NEW.case_id IS NOT OLD.case_id "
        "AND EXISTS (SELECT 1 FROM review_events WHERE case_id = OLD.case_id) "
        f"BEGIN SELECT RAISE(ABORT, '{_CASE_MESSAGE}'); END"),
}

_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION medssl_review_events_append_only() RETURNS trigger AS $body$ "
    f"BEGIN RAISE EXCEPTION '{MESSAGE}'; END; $body$ LANGUAGE plpgsql"
)
PG_TRIGGERS: dict[str, str] = {
    "review_events_append_only": "BEFORE UPDATE OR DELETE ON review_events FOR EACH ROW "
                                 "EXECUTE FUNCTION medssl_review_events_append_only()",
    "review_events_no_truncate": "BEFORE TRUNCATE ON review_events FOR EACH STATEMENT "
                                 "EXECUTE FUNCTION medssl_review_events_append_only()",
}

# What the app role may do, table by table (README "Review store: roles and audit").
APP_ROLE_PRIVILEGES: dict[str, str] = {
    "review_events": "SELECT, INSERT",            # append only
    "cases": "SELECT, INSERT, UPDATE",            # score import upserts; decisions lock the case row
    "claims": "SELECT, INSERT, UPDATE, DELETE",   # a lock table, not history
    "users": "SELECT, INSERT, UPDATE",            # accounts; UPDATE re-hashes a password on sign-in
    "login_attempts": "SELECT, INSERT",           # the login throttle
    "registered_models": "SELECT, INSERT",
    "label_requests": "SELECT, INSERT",           # "Label next": requests are added, never changed
    "session_secrets": "SELECT, INSERT",          # the sign-in token key (created on first use)
    "revoked_sessions": "SELECT, INSERT",         # sign-out revokes its token
}


def app_role_grants(role: str) -> list[str]:
    """The SQL an owner runs (once, after the owner created the tables) to let ``role`` use the
    store as the app does, and nothing more: no ownership, so no ALTER/DISABLE TRIGGER, TRUNCATE,
    UPDATE or DELETE of events."""
    quoted = '"' + role.replace('"', '""') + '"'
    grants = [f"GRANT {privs} ON {table} TO {quoted}" for table, privs in APP_ROLE_PRIVILEGES.items()]
    grants.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
    return grants


def install_guards(engine: Engine) -> None:
    """Add the hash columns (sealing existing events) and the append-only triggers where missing."""
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            _add_hash_columns(conn, drop_guard="DROP TRIGGER IF EXISTS review_events_no_update")
            for name, body in SQLITE_TRIGGERS.items():
                conn.exec_driver_sql(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
    elif engine.dialect.name == "postgresql":
        _install_pg(engine)


def _install_pg(engine: Engine) -> None:
    with engine.connect() as conn:
        present = {r[0] for r in conn.execute(text(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'review_events'::regclass AND NOT tgisinternal"))}
        has_hash = _has_hash_columns(conn)
    if has_hash and set(PG_TRIGGERS) <= present:
        return
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(_PG_FUNCTION)
            for name, body in PG_TRIGGERS.items():
                if name not in present:
                    conn.exec_driver_sql(f"CREATE TRIGGER {name} {body}")
            _add_hash_columns(conn, drop_guard="ALTER TABLE review_events DISABLE TRIGGER review_events_append_only",
                              restore_guard="ALTER TABLE review_events ENABLE TRIGGER review_events_append_only")
    except DBAPIError as exc:
        raise owner_upgrade_error(exc, engine, "its audit-trail upgrade (hash chain, append-only triggers)") from None


def _has_hash_columns(conn: Connection) -> bool:
    return {"prev_hash", "hash"} <= {c["name"] for c in inspect(conn).get_columns("review_events")}


def _add_hash_columns(conn: Connection, drop_guard: str, restore_guard: str | None = None) -> None:
    """Upgrade a store without the chain: add the columns, seal the existing events in id order
    (with the UPDATE guard lifted inside this one transaction), and put the guard back."""
    if _has_hash_columns(conn):
        return
    for column in ("prev_hash", "hash"):
        conn.exec_driver_sql(f"ALTER TABLE review_events ADD COLUMN {column} VARCHAR(64)")
    events = conn.execute(select(ReviewEvent.__table__).order_by(ReviewEvent.id)).all()
    if events:
        conn.exec_driver_sql(drop_guard)
        table = ReviewEvent.__table__
        for row in seal_rows(events):
            conn.execute(table.update().where(table.c.id == row["id"]).values(prev_hash=row["prev_hash"], hash=row["hash"]))
        if restore_guard:
            conn.exec_driver_sql(restore_guard)
    # SQLite: the dropped trigger is created again by install_guards in the same transaction
