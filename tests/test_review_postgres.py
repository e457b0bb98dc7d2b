"""The review store on a real PostgreSQL 15 server (tests/pg_server.py): the two roles (owner makes
the tables, the app role only uses them), TRUNCATE / UPDATE / DELETE / UPSERT of events refused,
the app role unable to disable the triggers, concurrent undos, the hash chain, score import limits."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from medssl.cli import main
from medssl.errors import ConfigError
from medssl.review import (
    ClaimError, ReviewError, case_events, import_scores, list_queue, make_engine, record_decision, release_case, undo_last,
)
from medssl.review.append_only import app_role_grants
from medssl.review.chain import verify_chain
from review_scores import build_real_scores
from undo_race import check_undo_race

_DB_NUMBER = itertools.count()


@pytest.fixture(scope="module")
def pg(pg_server):
    """The session's server (tests/conftest.py) with the owner and app roles."""
    if isinstance(pg_server, str):
        pytest.skip(pg_server)
    for role in ("medssl_owner", "medssl_app"):
        pg_server.ensure_role(role)
    return pg_server


@pytest.fixture(scope="module")
def scores(shared_data: Path, tmp_path_factory) -> Path:
    return build_real_scores(shared_data, tmp_path_factory.mktemp("data"), n_cases=20, flag_top=6)


@pytest.fixture()
def store(pg, scores: Path):
    """A fresh database owned by medssl_owner, tables made by the owner, the app role granted
    what ``medssl audit grants`` prints; scores imported by the app. Yields (owner url, app url)."""
    db = f"roles_{next(_DB_NUMBER)}"
    pg.create_database(db, owner="medssl_owner")
    owner_url, app_url = pg.url("medssl_owner", db), pg.url("medssl_app", db)
    owner = make_engine(owner_url)
    with owner.begin() as conn:
        for statement in app_role_grants("medssl_app"):
            conn.execute(text(statement))
    owner.dispose()
    app = make_engine(app_url)
    import_scores(app, scores)
    app.dispose()
    yield owner_url, app_url
    pg.drop_database(db)


def _refused(url: str, sql: str, match: str) -> None:
    engine = create_engine(url)
    with pytest.raises(DBAPIError, match=match):
        with engine.begin() as conn:
            conn.execute(text(sql))
    engine.dispose()


def _n_events(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM review_events")).scalar_one()
    engine.dispose()
    return n


def test_the_trail_cannot_be_rewritten_by_the_owner_nor_the_app(store) -> None:
    owner_url, app_url = store
    app = make_engine(app_url)
    case_id = list_queue(app).rows["case_id"][0]
    record_decision(app, case_id, "dr_lee", "confirm")
    record_decision(app, case_id, "dr_kim", "dismiss", override=True)
    for url in (owner_url, app_url):
        _refused(url, "TRUNCATE review_events", "append-only|permission denied")
        _refused(url, "TRUNCATE review_events, cases, claims", "append-only|permission denied")
        _refused(url, "UPDATE review_events SET label = 'forged'", "append-only|permission denied")
        _refused(url, "DELETE FROM review_events", "append-only|permission denied")
        _refused(url, "INSERT INTO review_events (id, case_id, reviewer, action, created_at) "
                      "SELECT id, case_id, 'mallory', 'dismiss', created_at FROM review_events "
                      "ON CONFLICT (id) DO UPDATE SET label = 'forged'", "append-only|permission denied")
        _refused(url, "DELETE FROM cases", "foreign key|permission denied")
    # the owner's own TRUNCATE is refused by the trigger itself, not by a missing privilege
    _refused(owner_url, "TRUNCATE review_events", "append-only")
    _refused(owner_url, "TRUNCATE cases CASCADE", "append-only")
    assert _n_events(owner_url) == 2
    assert [e.action for e in case_events(app, case_id)] == ["confirm", "dismiss"]


def test_the_app_role_cannot_disable_or_drop_the_triggers(store) -> None:
    owner_url, app_url = store
    for sql in ("ALTER TABLE review_events DISABLE TRIGGER review_events_append_only",
                "ALTER TABLE review_events DISABLE TRIGGER ALL",
                "DROP TRIGGER review_events_no_truncate ON review_events",
                "ALTER TABLE review_events OWNER TO medssl_app"):
        _refused(app_url, sql, "must be owner|permission denied")
    # what the owner can do (hence: the app never connects as the owner)
    owner = create_engine(owner_url)
    with owner.begin() as conn:
        conn.execute(text("ALTER TABLE review_events DISABLE TRIGGER review_events_append_only"))
        conn.execute(text("ALTER TABLE review_events ENABLE TRIGGER review_events_append_only"))
    owner.dispose()


def test_concurrent_undos_each_undo_a_different_decision_postgres(store) -> None:
    _, app_url = store
    app = make_engine(app_url)
    case_id = list_queue(app).rows["case_id"][0]
    check_undo_race(lambda: make_engine(app_url), case_id, rounds=5)
    assert verify_chain(app).ok


def _until_unclaimed(write):
    """``write()``, retried while another writer holds the case's claim (for a moment)."""
    while True:
        try:
            return write()
        except ClaimError:
            time.sleep(0.005)


def test_the_chain_holds_under_concurrent_writers_and_verify_finds_an_edit(store, capsys) -> None:
    owner_url, app_url = store
    cases = list_queue(make_engine(app_url)).rows["case_id"].tolist()[:3]
    barrier = threading.Barrier(6)

    def writer(t: int) -> None:
        eng = make_engine(app_url)
        barrier.wait()
        for i in range(10):
            # override: the writers decide over each other on purpose; an undo takes its writer the
            # claim (issue 16), so the others wait for its release (ClaimError meanwhile)
            _until_unclaimed(lambda: record_decision(eng, cases[i % 3], f"r{t}", "assign_class", label=f"r{t}-{i}", override=True))
            if i % 4 == 3:
                _until_unclaimed(lambda: undo_last(eng, cases[i % 3], f"r{t}", override=True))
                release_case(eng, cases[i % 3], f"r{t}")
        eng.dispose()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert main(["audit", "verify", "--db", app_url]) == 0
    # 60 decisions + 12 undos, each undo with its claim and release
    assert "audit trail OK: 96 events" in capsys.readouterr().out
    # the owner (or a superuser) can lift the guard and edit: the chain shows it
    owner = create_engine(owner_url)
    with owner.begin() as conn:
        conn.execute(text("ALTER TABLE review_events DISABLE TRIGGER review_events_append_only"))
        target = conn.execute(text("SELECT id FROM review_events ORDER BY id OFFSET 40 LIMIT 1")).scalar_one()
        conn.execute(text("UPDATE review_events SET label = 'forged' WHERE id = :id"), {"id": target})
        conn.execute(text("ALTER TABLE review_events ENABLE TRIGGER review_events_append_only"))
    owner.dispose()
    assert main(["audit", "verify", "--db", app_url]) == 3
    assert f"audit trail broken at event {target} " in capsys.readouterr().err


def test_an_old_store_is_upgraded_by_the_owner_and_the_app_role_is_told_how(store, capsys) -> None:
    owner_url, app_url = store
    app = make_engine(app_url)
    case_id = list_queue(app).rows["case_id"][0]
    record_decision(app, case_id, "dr_lee", "confirm")
    app.dispose()
    owner = create_engine(owner_url)
    with owner.begin() as conn:  # what an older medssl left: no chain columns, no TRUNCATE trigger
        conn.execute(text("DROP TRIGGER review_events_no_truncate ON review_events"))
        conn.execute(text("ALTER TABLE review_events DROP COLUMN prev_hash, DROP COLUMN hash"))
    owner.dispose()
    with pytest.raises(ConfigError, match="only the tables' owner may"):
        make_engine(app_url)
    assert main(["audit", "verify", "--db", owner_url]) == 0
    assert "audit trail OK: 1 events" in capsys.readouterr().out
    _refused(owner_url, "TRUNCATE review_events", "append-only")
    record_decision(make_engine(app_url), case_id, "dr_lee", "dismiss")
    assert verify_chain(make_engine(app_url)).ok


def test_score_files_postgres_would_choke_on_are_refused_before_writing(store, scores: Path, tmp_path: Path, capsys) -> None:
    _, app_url = store
    df = pd.read_parquet(scores)
    df.loc[3, "case_id"] = "x" * 300  # over the 256 characters of cases.case_id
    df.loc[5, "anomaly_score"] = float("nan")  # PostgreSQL sorts NaN above every number
    bad = tmp_path / "bad.parquet"
    df.to_parquet(bad, index=False)
    before = _n_events(app_url)
    assert main(["app", "--import-only", "--scores", str(bad), "--db", app_url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "case_id" in err
    with create_engine(app_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM cases WHERE length(case_id) > 256")).scalar_one() == 0
    assert _n_events(app_url) == before


def test_an_over_long_class_label_is_one_review_error(store) -> None:
    _, app_url = store
    app = make_engine(app_url)
    case_id = list_queue(app).rows["case_id"][0]
    with pytest.raises(ReviewError, match="the class label is 200 characters long; use at most 128"):
        record_decision(app, case_id, "dr_lee", "assign_class", label="c" * 200)
    assert case_events(app, case_id) == []
