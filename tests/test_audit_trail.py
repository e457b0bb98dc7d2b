"""The audit trail on SQLite: append-only against a raw sqlite3 connection (no pragmas, foreign keys
off, as an attacker with the file would use), the hash chain and `medssl audit verify`, concurrent
undos, and the upgrade of a store written by an older medssl."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from medssl.cli import main
from medssl.review import case_events, import_scores, list_queue, make_engine, record_decision, undo_last
from review_scores import build_real_scores
from undo_race import check_undo_race


@pytest.fixture(scope="module")
def scores(shared_data: Path, tmp_path_factory) -> Path:
    return build_real_scores(shared_data, tmp_path_factory.mktemp("data"), n_cases=20, flag_top=6)


@pytest.fixture()
def store(tmp_path: Path, scores: Path) -> tuple[str, Path, list[str]]:
    """A store with 3 decisions, a claim (taken by the undo) and an undo on two cases: (url, file, case ids)."""
    path = tmp_path / "review.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    import_scores(engine, scores)
    cases = list_queue(engine).rows["case_id"].tolist()[:2]
    record_decision(engine, cases[0], "dr_lee", "confirm", note="looks like pneumonia")
    record_decision(engine, cases[1], "dr_lee", "dismiss")
    record_decision(engine, cases[0], "dr_kim", "assign_class", label="1", override=True)
    undo_last(engine, cases[0], "dr_kim")
    engine.dispose()
    return url, path, cases


def verify_chain(engine):
    """medssl.review.chain.verify_chain, imported late so that this file also runs against a medssl
    without the chain (to show each guard test failing there)."""
    from medssl.review.chain import verify_chain as verify

    return verify(engine)


def _raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection: no medssl pragmas (foreign keys stay off), autocommit."""
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (0,)
    return conn


def _events(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM review_events ORDER BY id").fetchall()


@pytest.mark.parametrize("sql", [
    # the probe's forgery: REPLACE deletes the old row without firing the DELETE trigger
    "INSERT OR REPLACE INTO review_events (id, case_id, reviewer, action, label, created_at) "
    "VALUES (1, :case, 'mallory', 'dismiss', 'forged', '2026-01-01 00:00:00')",
    "REPLACE INTO review_events (id, case_id, reviewer, action, created_at) "
    "VALUES (1, :case, 'mallory', 'dismiss', '2026-01-01 00:00:00')",
    "INSERT INTO review_events (id, case_id, reviewer, action, created_at) "
    "VALUES (1, :case, 'mallory', 'dismiss', '2026-01-01 00:00:00') ON CONFLICT(id) DO UPDATE SET label = 'forged'",
    "UPDATE review_events SET label = 'forged' WHERE case_id = :case",
    "DELETE FROM review_events WHERE case_id = :case",
    "DELETE FROM review_events",
    # orphaning the events: deleting or renaming their case (foreign keys are off on this connection)
    "DELETE FROM cases",
    "DELETE FROM cases WHERE case_id = :case",
    "UPDATE cases SET case_id = 'renamed' WHERE case_id = :case",
    # an event for a case that does not exist
    "INSERT INTO review_events (case_id, reviewer, action, created_at) VALUES ('no-such-case', 'm', 'confirm', '2026-01-01')",
])
def test_a_raw_sqlite_connection_cannot_rewrite_the_trail(store, sql: str) -> None:
    url, path, cases = store
    before = _events(path)
    conn = _raw(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only|has review events|not in cases"):
        conn.execute(sql, {"case": cases[0]})
    conn.close()
    assert _events(path) == before and len(before) == 5
    assert verify_chain(make_engine(url)).ok


def test_cases_without_events_can_still_be_reimported(store) -> None:
    """The guards protect events, not the score import: a case nobody decided on may be replaced."""
    url, path, cases = store
    conn = _raw(path)
    free = conn.execute("SELECT case_id FROM cases WHERE case_id NOT IN (SELECT case_id FROM review_events)").fetchone()[0]
    conn.execute("DELETE FROM cases WHERE case_id = ?", (free,))
    assert conn.execute("SELECT count(*) FROM cases WHERE case_id = ?", (free,)).fetchone() == (0,)
    conn.close()


def test_audit_verify_passes_on_an_intact_trail(store, capsys) -> None:
    url, _, _ = store
    assert main(["audit", "verify", "--db", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("audit trail OK: 5 events (head ") and len(out.split("head ")[1].strip(" )\n")) == 64


def _drop_guards(conn: sqlite3.Connection) -> None:
    """What someone with write access to the file can do: drop the triggers."""
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")


@pytest.mark.parametrize("tamper, event_id, problem", [
    ("UPDATE review_events SET label = 'forged' WHERE id = 3", 3, "content does not match its hash"),
    ("UPDATE review_events SET reviewer = 'mallory' WHERE id = 1", 1, "content does not match its hash"),
    ("UPDATE review_events SET created_at = '2020-01-01 00:00:00.000000' WHERE id = 4", 4, "content does not match"),
    ("DELETE FROM review_events WHERE id = 2", 3, "prev_hash"),  # the next event names the gap
    ("INSERT INTO review_events (id, case_id, reviewer, action, created_at) "
     "SELECT 6, case_id, 'mallory', 'confirm', '2026-01-01 00:00:00' FROM cases LIMIT 1", 6, "no hash"),
])
def test_audit_verify_names_the_first_edited_event(store, capsys, tamper: str, event_id: int, problem: str) -> None:
    url, path, _ = store
    conn = _raw(path)
    _drop_guards(conn)
    conn.execute(tamper)
    conn.close()
    assert main(["audit", "verify", "--db", url]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"medssl: error: audit trail broken at event {event_id} ") and problem in err
    assert len(err.splitlines()) == 1


def test_a_recomputed_edit_still_breaks_the_next_link(store, capsys) -> None:
    """Editing event 2 and recomputing *its* hash leaves event 3's prev_hash pointing at the old one."""
    from medssl.review.chain import HASHED_FIELDS, event_hash

    url, path, _ = store
    conn = _raw(path)
    _drop_guards(conn)
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM review_events WHERE id = 2").fetchone())
    row["action"] = "confirm"
    fields = {k: row[k] for k in HASHED_FIELDS}
    import datetime as dt
    fields["created_at"] = dt.datetime.fromisoformat(row["created_at"])
    conn.execute("UPDATE review_events SET action = 'confirm', hash = ? WHERE id = 2", (event_hash(row["prev_hash"], fields),))
    conn.close()
    assert main(["audit", "verify", "--db", url]) == 3
    assert "broken at event 3 " in capsys.readouterr().err


def test_concurrent_undos_each_undo_a_different_decision_sqlite(tmp_path: Path, scores: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    engine = make_engine(url)
    import_scores(engine, scores)
    case_id = list_queue(engine).rows["case_id"][0]
    check_undo_race(lambda: make_engine(url), case_id)
    assert verify_chain(engine).ok


def test_a_store_from_an_older_medssl_is_upgraded_and_sealed(store, capsys) -> None:
    """An older store: no hash columns, only the UPDATE/DELETE triggers. make_engine adds the
    columns, seals the existing events into a chain and installs every guard."""
    url, path, cases = store
    conn = _raw(path)
    _drop_guards(conn)
    conn.execute("ALTER TABLE review_events DROP COLUMN prev_hash")
    conn.execute("ALTER TABLE review_events DROP COLUMN hash")
    for op in ("UPDATE", "DELETE"):  # what medssl wrote before the chain
        conn.execute(f"CREATE TRIGGER review_events_no_{op.lower()} BEFORE {op} ON review_events "
                     "BEGIN SELECT RAISE(ABORT, 'review_events is append-only'); END")
    old = conn.execute("SELECT id, case_id, action, label FROM review_events ORDER BY id").fetchall()
    conn.close()

    engine = make_engine(url)
    record_decision(engine, cases[1], "dr_lee", "confirm")
    assert [(e.id, e.case_id, e.action, e.label) for e in case_events(engine, cases[0]) + case_events(engine, cases[1])
            if e.id <= 5] == sorted(old, key=lambda r: (r[1] != cases[0], r[0]))
    assert main(["audit", "verify", "--db", url]) == 0
    assert "audit trail OK: 6 events" in capsys.readouterr().out
    conn = _raw(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("INSERT OR REPLACE INTO review_events (id, case_id, reviewer, action, created_at) "
                     "VALUES (1, ?, 'mallory', 'dismiss', '2026-01-01')", (cases[0],))
    conn.close()
