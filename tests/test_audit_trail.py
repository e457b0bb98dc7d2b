"""The audit trail on SQLite and on a real PostgreSQL (tests/conftest.py ``new_review_db``):
append-only against a raw connection outside medssl (SQLite: plain sqlite3, no pragmas, foreign keys
off, as an attacker with the file would use; PostgreSQL: plain psycopg as the superuser that owns the
database), the hash chain and `medssl audit verify`, concurrent undos, and the upgrade of a store
written by an older medssl."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from medssl.cli import main
from medssl.review import case_events, import_scores, list_queue, make_engine, record_decision, undo_last
from review_scores import build_real_scores
from undo_race import check_undo_race


@pytest.fixture(scope="module")
def scores(shared_data: Path, tmp_path_factory) -> Path:
    return build_real_scores(shared_data, tmp_path_factory.mktemp("data"), n_cases=20, flag_top=6)


class Raw:
    """A plain DB-API connection to the store, outside medssl and SQLAlchemy, autocommit: sqlite3
    (no medssl pragmas: foreign keys stay off) or psycopg. ``execute`` takes ``:name`` / ``?``
    parameters on both."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.backend = parsed.get_backend_name()
        if self.backend == "sqlite":
            self.conn: Any = sqlite3.connect(parsed.database, isolation_level=None)
            assert self.conn.execute("PRAGMA foreign_keys").fetchone() == (0,)
            self.error: type[Exception] = sqlite3.DatabaseError
        else:
            import psycopg

            self.conn = psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                                        dbname=parsed.database, autocommit=True)
            self.error = psycopg.Error

    def execute(self, sql: str, params: Any = ()) -> list[tuple]:
        if self.backend == "postgresql":
            sql = sql.replace(":case", "%(case)s").replace("?", "%s")
        cursor = self.conn.execute(sql, params)
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    def row(self, sql: str, params: Any = ()) -> dict[str, Any]:
        """One row as ``{column: value}``."""
        if self.backend == "postgresql":
            sql = sql.replace("?", "%s")
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return dict(zip(names, cursor.fetchone()))

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True)
class Store:
    url: str
    cases: list[str]

    def raw(self) -> Raw:
        return Raw(self.url)

    @property
    def backend(self) -> str:
        return make_url(self.url).get_backend_name()


@pytest.fixture()
def store(new_review_db, scores: Path) -> Store:
    """A store with 3 decisions, a claim (taken by the undo) and an undo on two cases."""
    url = new_review_db("review")
    engine = make_engine(url)
    import_scores(engine, scores)
    cases = list_queue(engine).rows["case_id"].tolist()[:2]
    record_decision(engine, cases[0], "dr_lee", "confirm", note="looks like pneumonia")
    record_decision(engine, cases[1], "dr_lee", "dismiss")
    record_decision(engine, cases[0], "dr_kim", "assign_class", label="1", override=True)
    undo_last(engine, cases[0], "dr_kim")
    engine.dispose()
    return Store(url, cases)


def verify_chain(engine):
    """medssl.review.chain.verify_chain, imported late so that this file also runs against a medssl
    without the chain (to show each guard test failing there)."""
    from medssl.review.chain import verify_chain as verify

    return verify(engine)


def _events(store: Store) -> list[tuple]:
    raw = store.raw()
    try:
        return raw.execute("SELECT * FROM review_events ORDER BY id")
    finally:
        raw.close()


_FORGED = "(1, :case, 'mallory', 'dismiss', 'forged', '2026-01-01 00:00:00')"
_COLUMNS = "(id, case_id, reviewer, action, label, created_at)"
# attack -> (SQLite statement, PostgreSQL statement): the same intent in each dialect
ATTACKS: dict[str, tuple[str, str]] = {
    # the probe's forgery: REPLACE deletes the old row without firing the DELETE trigger;
    # PostgreSQL's way to replace a row is an UPSERT that overwrites every column
    "insert_or_replace": (f"INSERT OR REPLACE INTO review_events {_COLUMNS} VALUES {_FORGED}",
                          f"INSERT INTO review_events {_COLUMNS} VALUES {_FORGED} ON CONFLICT (id) DO UPDATE SET "
                          "case_id = EXCLUDED.case_id, reviewer = EXCLUDED.reviewer, action = EXCLUDED.action, "
                          "label = EXCLUDED.label, created_at = EXCLUDED.created_at"),
    "replace": ("REPLACE INTO review_events (id, case_id, reviewer, action, created_at) "
                "VALUES (1, :case, 'mallory', 'dismiss', '2026-01-01 00:00:00')",
                "MERGE INTO review_events e USING (SELECT 1 AS id) s ON e.id = s.id "
                "WHEN MATCHED THEN UPDATE SET label = 'forged'"),
    "upsert": (f"INSERT INTO review_events {_COLUMNS} VALUES {_FORGED} ON CONFLICT(id) DO UPDATE SET label = 'forged'",) * 2,
    "update": ("UPDATE review_events SET label = 'forged' WHERE case_id = :case",) * 2,
    "delete_a_cases_events": ("DELETE FROM review_events WHERE case_id = :case",) * 2,
    "delete_all": ("DELETE FROM review_events",) * 2,
    # SQLite has no TRUNCATE (a DELETE without WHERE is its truncate)
    "truncate": ("DELETE FROM review_events", "TRUNCATE review_events, cases CASCADE"),
    # orphaning the events: deleting or renaming their case (foreign keys are off on the SQLite connection)
    "delete_cases": ("DELETE FROM cases",) * 2,
    "delete_the_case": ("DELETE FROM cases WHERE case_id = :case",) * 2,
    "rename_the_case": ("UPDATE cases SET case_id = 'renamed' WHERE case_id = :case",) * 2,
    # an event for a case that does not exist
    "event_for_no_case": ("INSERT INTO review_events (case_id, reviewer, action, created_at) "
                          "VALUES ('no-such-case', 'm', 'confirm', '2026-01-01')",) * 2,
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_raw_connection_cannot_rewrite_the_trail(store: Store, attack: str) -> None:
    sql = ATTACKS[attack][store.backend == "postgresql"]
    before = _events(store)
    raw = store.raw()
    with pytest.raises(raw.error, match="append-only|has review events|not in cases|foreign key"):
        raw.execute(sql, {"case": store.cases[0]})
    raw.close()
    assert _events(store) == before and len(before) == 5
    assert verify_chain(make_engine(store.url)).ok


def test_cases_without_events_can_still_be_reimported(store: Store) -> None:
    """The guards protect events, not the score import: a case nobody decided on may be replaced."""
    raw = store.raw()
    free = raw.execute("SELECT case_id FROM cases WHERE case_id NOT IN (SELECT case_id FROM review_events)")[0][0]
    raw.execute("DELETE FROM cases WHERE case_id = ?", (free,))
    assert raw.execute("SELECT count(*) FROM cases WHERE case_id = ?", (free,)) == [(0,)]
    raw.close()


def test_audit_verify_passes_on_an_intact_trail(store: Store, capsys) -> None:
    assert main(["audit", "verify", "--db", store.url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("audit trail OK: 5 events (head ") and len(out.split("head ")[1].strip(" )\n")) == 64


def _drop_guards(raw: Raw) -> None:
    """What someone with write access to the file (SQLite) or the tables' owner (PostgreSQL) can
    do: drop or disable the triggers."""
    if raw.backend == "sqlite":
        for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            raw.execute(f"DROP TRIGGER {name}")
    else:
        raw.execute("ALTER TABLE review_events DISABLE TRIGGER USER")


@pytest.mark.parametrize("tamper, event_id, problem", [
    ("UPDATE review_events SET label = 'forged' WHERE id = 3", 3, "content does not match its hash"),
    ("UPDATE review_events SET reviewer = 'mallory' WHERE id = 1", 1, "content does not match its hash"),
    ("UPDATE review_events SET created_at = '2020-01-01 00:00:00.000000' WHERE id = 4", 4, "content does not match"),
    ("DELETE FROM review_events WHERE id = 2", 3, "prev_hash"),  # the next event names the gap
    ("INSERT INTO review_events (id, case_id, reviewer, action, created_at) "
     "SELECT 6, case_id, 'mallory', 'confirm', '2026-01-01 00:00:00' FROM cases LIMIT 1", 6, "no hash"),
], ids=["label", "reviewer", "created_at", "delete", "insert"])
def test_audit_verify_names_the_first_edited_event(store: Store, capsys, tamper: str, event_id: int, problem: str) -> None:
    raw = store.raw()
    _drop_guards(raw)
    raw.execute(tamper)
    raw.close()
    assert main(["audit", "verify", "--db", store.url]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"medssl: error: audit trail broken at event {event_id} ") and problem in err
    assert len(err.splitlines()) == 1


def test_a_recomputed_edit_still_breaks_the_next_link(store: Store, capsys) -> None:
    """Editing event 2 and recomputing *its* hash leaves event 3's prev_hash pointing at the old one."""
    from medssl.review.chain import HASHED_FIELDS, event_hash

    raw = store.raw()
    _drop_guards(raw)
    row = raw.row("SELECT * FROM review_events WHERE id = 2")
    row["action"] = "confirm"
    fields = {k: row[k] for k in HASHED_FIELDS}
    if isinstance(row["created_at"], str):  # SQLite keeps text; psycopg gives a datetime
        fields["created_at"] = dt.datetime.fromisoformat(row["created_at"])
    raw.execute("UPDATE review_events SET action = 'confirm', hash = ? WHERE id = 2", (event_hash(row["prev_hash"], fields),))
    raw.close()
    assert main(["audit", "verify", "--db", store.url]) == 3
    assert "broken at event 3 " in capsys.readouterr().err


def test_concurrent_undos_each_undo_a_different_decision(new_review_db, scores: Path) -> None:
    url = new_review_db("race")
    engine = make_engine(url)
    import_scores(engine, scores)
    case_id = list_queue(engine).rows["case_id"][0]
    check_undo_race(lambda: make_engine(url), case_id)
    assert verify_chain(engine).ok


# what medssl wrote before the chain: SQLite's UPDATE and DELETE triggers; PostgreSQL's row trigger
# without the TRUNCATE one
_OLD_GUARDS: dict[str, list[str]] = {
    "sqlite": [f"CREATE TRIGGER review_events_no_{op.lower()} BEFORE {op} ON review_events "
               "BEGIN SELECT RAISE(ABORT, 'review_events is append-only'); END" for op in ("UPDATE", "DELETE")],
    "postgresql": ["DROP TRIGGER review_events_no_truncate ON review_events",
                   "ALTER TABLE review_events ENABLE TRIGGER review_events_append_only"],
}


def test_a_store_from_an_older_medssl_is_upgraded_and_sealed(store: Store, capsys) -> None:
    """An older store: no hash columns, only the UPDATE/DELETE guards. make_engine (as the tables'
    owner) adds the columns, seals the existing events into a chain and installs every guard."""
    cases = store.cases
    raw = store.raw()
    _drop_guards(raw)
    raw.execute("ALTER TABLE review_events DROP COLUMN prev_hash")
    raw.execute("ALTER TABLE review_events DROP COLUMN hash")
    for statement in _OLD_GUARDS[store.backend]:
        raw.execute(statement)
    old = raw.execute("SELECT id, case_id, action, label FROM review_events ORDER BY id")
    raw.close()

    engine = make_engine(store.url)
    record_decision(engine, cases[1], "dr_lee", "confirm")
    assert [(e.id, e.case_id, e.action, e.label) for e in case_events(engine, cases[0]) + case_events(engine, cases[1])
            if e.id <= 5] == sorted(old, key=lambda r: (r[1] != cases[0], r[0]))
    assert main(["audit", "verify", "--db", store.url]) == 0
    assert "audit trail OK: 6 events" in capsys.readouterr().out
    raw = store.raw()
    with pytest.raises(raw.error, match="append-only"):
        raw.execute(ATTACKS["insert_or_replace"][store.backend == "postgresql"], {"case": cases[0]})
    if store.backend == "postgresql":  # the TRUNCATE guard the old store lacked
        with pytest.raises(raw.error, match="append-only"):
            raw.execute("TRUNCATE review_events")
    raw.close()
