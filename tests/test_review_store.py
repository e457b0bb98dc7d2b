"""Review store: accounts, score import, queue, decisions as append-only events, claims, export,
and concurrent writers (threads and processes), each on a real SQLite file and on a real PostgreSQL
server (tests/conftest.py ``new_review_db``: one server per session, a fresh database per test)."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from medssl.cli import main
from medssl.errors import DataError
from medssl.review import (
    ClaimError, ReviewError, UserError, add_note, add_user, authenticate, case_events, case_state,
    claim_case, decisions_to_labels, export_labels, get_case, import_scores, list_queue, list_users,
    make_engine, record_decision, release_case, undo_last,
)
from review_scores import build_real_scores


@pytest.fixture(scope="module")
def scores(shared_data: Path, tmp_path_factory) -> Path:
    return build_real_scores(shared_data, tmp_path_factory.mktemp("data"))


@pytest.fixture()
def url(new_review_db) -> str:
    """A fresh, empty store on the backend of the test's ``[sqlite]`` / ``[postgresql]`` variant."""
    return new_review_db("review")


@pytest.fixture()
def engine(url: str):
    eng = make_engine(url)
    yield eng
    eng.dispose()


def test_store_connections_are_set_for_concurrent_writers(engine, scores: Path) -> None:
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on every medssl connection
    import_scores(engine, scores)
    with pytest.raises(IntegrityError):  # foreign keys hold on every medssl connection, both backends
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO claims (case_id, reviewer, expires_at) VALUES ('no-such-case', 'x', :t)"),
                         {"t": dt.datetime(2030, 1, 1)})


def _store_bytes(engine, request) -> bytes:
    """Every byte the store wrote to disk: the SQLite file and its WAL, or (after a CHECKPOINT) the
    PostgreSQL database's files and the server's write-ahead log."""
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database)
        return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    with engine.connect() as conn:
        oid = conn.execute(text("SELECT oid FROM pg_database WHERE datname = current_database()")).scalar_one()
        conn.execute(text("CHECKPOINT"))
    data = request.getfixturevalue("pg_server").data
    return b"".join(p.read_bytes() for folder in (data / "base" / str(oid), data / "pg_wal")
                    for p in sorted(folder.iterdir()) if p.is_file())


def test_accounts_hash_passwords_and_check_roles(engine, request) -> None:
    acc = add_user(engine, "dr_lee", "clinician", "correct horse 42")
    assert (acc.name, acc.role, acc.can_fine_tune) == ("dr_lee", "clinician", False)
    assert add_user(engine, "ana", "data_scientist", "battery staple").can_fine_tune
    assert authenticate(engine, "dr_lee", "correct horse 42").name == "dr_lee"
    assert authenticate(engine, "dr_lee", "wrong password") is None
    assert authenticate(engine, "nobody", "correct horse 42") is None
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM users WHERE name = :n"), {"n": "dr_lee"}).scalar()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    on_disk = _store_bytes(engine, request)
    assert stored.encode() in on_disk and b"correct horse 42" not in on_disk  # the search does find what is stored
    with pytest.raises(UserError, match="already exists"):
        add_user(engine, "dr_lee", "admin", "another pass")
    with pytest.raises(UserError, match="unknown role 'nurse'"):
        add_user(engine, "x", "nurse", "long enough")
    with pytest.raises(UserError, match="too short"):
        add_user(engine, "y", "admin", "short")
    assert [a.name for a in list_users(engine)] == ["ana", "dr_lee"]
    add_user(engine, "Zed", "admin", "zed-password")
    add_user(engine, "dr-kim", "clinician", "kim-password")
    # code-point order on both backends (PostgreSQL with an en-US collation put Zed last)
    assert [a.name for a in list_users(engine)] == ["Zed", "ana", "dr-kim", "dr_lee"]


def test_queue_lists_flagged_cases_of_a_real_score_file(engine, scores: Path) -> None:
    df = pd.read_parquet(scores)
    assert import_scores(engine, scores) == len(df) == 60
    assert import_scores(engine, scores) == 60  # idempotent re-import
    expected = df[df["flagged"]].sort_values("anomaly_score", ascending=False)["case_id"].tolist()
    page = list_queue(engine, page_size=5)
    assert (page.total, page.n_pages, page.page) == (12, 3, 1)
    assert page.rows["case_id"].tolist() == expected[:5]
    assert list_queue(engine, page=3, page_size=5).rows["case_id"].tolist() == expected[10:]
    assert list_queue(engine, domain="ehr").total == 0
    assert list_queue(engine, patient=expected[3]).rows["case_id"].tolist() == [expected[3]]
    assert list_queue(engine, flagged_only=False).total == 60
    case = get_case(engine, expected[0])
    top = df.set_index("case_id").loc[expected[0]]
    assert case["score"] == pytest.approx(float(top["anomaly_score"]))
    assert case["predicted_label"] == top["predicted_label"] and case["model_id"] == top["model_id"]
    assert case["data_dir"] == str(scores.parent.resolve())
    with pytest.raises(ReviewError, match="status"):
        list_queue(engine, status="done")


def test_a_score_file_reusing_ids_of_other_cases_is_refused_and_nothing_changes(engine, tmp_path: Path, scores: Path,
                                                                                new_review_db) -> None:
    import_scores(engine, scores)
    df = pd.read_parquet(scores)
    before = get_case(engine, df["case_id"][0])
    other = df.assign(domain="transactions", anomaly_score=df["anomaly_score"] + 1.0)  # same ids, other data
    other.iloc[:3].to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ReviewError, match=r"3 case id\(s\) of this score file already belong to other cases"):
        import_scores(engine, tmp_path / "other.parquet", data_dir=scores.parent)
    df.iloc[:2].to_parquet(tmp_path / "moved.parquet")  # same cases, another data folder
    with pytest.raises(ReviewError, match="--db"):
        import_scores(engine, tmp_path / "moved.parquet", data_dir=tmp_path)
    assert get_case(engine, df["case_id"][0]) == before  # nothing was overwritten
    # a data folder that was moved (the old one is gone): same cases, the new folder is recorded
    moved_store = make_engine(new_review_db("moved"))
    old_dir, new_dir = tmp_path / "old_data", tmp_path / "new_data"
    old_dir.mkdir()
    import_scores(moved_store, tmp_path / "moved.parquet", data_dir=old_dir)
    old_dir.rename(new_dir)
    assert import_scores(moved_store, tmp_path / "moved.parquet", data_dir=new_dir) == 2
    assert get_case(moved_store, df["case_id"][0])["data_dir"] == str(new_dir.resolve())
    rescored = df.assign(anomaly_score=df["anomaly_score"] * 2)  # the same cases re-scored: an update
    rescored.to_parquet(tmp_path / "rescored.parquet")
    assert import_scores(engine, tmp_path / "rescored.parquet", data_dir=scores.parent) == 60
    assert get_case(engine, df["case_id"][0])["score"] == pytest.approx(2 * before["score"])


def test_bad_score_file_is_refused_with_a_clear_message(engine, tmp_path: Path, scores: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        import_scores(engine, tmp_path / "missing.parquet")
    pd.read_parquet(scores).drop(columns=["model_id"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['model_id'\]"):
        import_scores(engine, tmp_path / "bad.parquet")


def test_decisions_are_events_undo_and_export(engine, scores: Path, tmp_path: Path) -> None:
    import_scores(engine, scores)
    a, b, c = list_queue(engine).rows["case_id"].tolist()[:3]
    predicted = get_case(engine, a)["predicted_label"]
    model_id = get_case(engine, a)["model_id"]
    first = record_decision(engine, a, "dr_lee", "confirm", note="consolidation right lower lobe")
    assert case_state(engine, a).status == "confirmed" and case_state(engine, a).label == predicted
    second = record_decision(engine, a, "dr_lee", "assign_class", label="0")
    assert (case_state(engine, a).status, case_state(engine, a).label) == ("labelled", "0")
    undo_last(engine, a, "dr_lee")
    state = case_state(engine, a)
    assert (state.status, state.label, state.decision_event_id) == ("confirmed", predicted, first)
    record_decision(engine, b, "dr_kim", "dismiss")
    assert (case_state(engine, b).status, case_state(engine, b).label) == ("dismissed", None)
    record_decision(engine, c, "dr_kim", "assign_class", label="1")
    add_note(engine, c, "dr_kim", "second opinion requested")
    events = case_events(engine, a)
    # the undo took the claim (nobody held one): a claim event precedes it (issue 16)
    assert [e.action for e in events] == ["confirm", "assign_class", "claim", "undo"]
    assert events[3].ref_event_id == second and all(e.model_id == model_id for e in events)
    assert list_queue(engine, status="confirmed").rows["case_id"].tolist() == [a]
    assert list_queue(engine, status="open").total == 9
    with pytest.raises(ReviewError, match="needs a class label"):
        record_decision(engine, b, "dr_kim", "assign_class")
    with pytest.raises(ReviewError, match="not in the review store"):
        record_decision(engine, "no-such-case", "dr_kim", "confirm")
    undo_last(engine, a, "dr_lee")
    with pytest.raises(ReviewError, match="no decision to undo"):
        undo_last(engine, a, "dr_lee")

    n = export_labels(engine, tmp_path / "labels.csv")
    exported = pd.read_csv(tmp_path / "labels.csv", dtype=str)
    assert n == 1 and exported.to_dict("records") == [{"case_id": c, "label": "1"}]
    assert decisions_to_labels(engine).equals(exported)


def test_events_are_append_only_in_the_database(engine, scores: Path) -> None:
    import_scores(engine, scores)
    case_id = list_queue(engine).rows["case_id"][0]
    record_decision(engine, case_id, "dr_lee", "confirm")
    for sql in ("UPDATE review_events SET label = 'x'", "DELETE FROM review_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(sql))
    assert [e.action for e in case_events(engine, case_id)] == ["confirm"]


def test_a_nul_character_in_an_id_label_or_note_is_a_review_error_not_a_database_error(engine, scores: Path) -> None:
    """PostgreSQL text cannot hold NUL (SQLite's can). An id with one (a deep link ``?case=a%00b``, a
    pasted patient id) names no case on either backend; a label or note with one is refused in one
    line; nothing is written."""
    import_scores(engine, scores)
    case_id = list_queue(engine).rows["case_id"][0]
    bad = case_id + "\x00"
    with pytest.raises(ReviewError, match="not in the review store"):
        get_case(engine, bad)
    for write in (lambda: record_decision(engine, bad, "dr_lee", "confirm"), lambda: claim_case(engine, bad, "dr_lee"),
                  lambda: undo_last(engine, bad, "dr_lee"), lambda: add_note(engine, bad, "dr_lee", "a note")):
        with pytest.raises(ReviewError, match="not in the review store"):
            write()
    assert case_events(engine, bad) == [] and case_state(engine, bad).status == "open"
    assert list_queue(engine, patient="\x00").total == 0
    assert list_queue(engine, patient=get_case(engine, case_id)["patient_id"] + "\x00", flagged_only=False).total == 0
    with pytest.raises(ReviewError, match="the class label contains a NUL character"):
        record_decision(engine, case_id, "dr_lee", "assign_class", label="1\x00")
    with pytest.raises(ReviewError, match="the note contains a NUL character"):
        record_decision(engine, case_id, "dr_lee", "confirm", note="see\x00 prior")
    with pytest.raises(ReviewError, match="the note contains a NUL character"):
        add_note(engine, case_id, "dr_lee", "see\x00 prior")
    assert case_events(engine, case_id) == []


@pytest.mark.parametrize("reviewer", ["r" * 65, "dr\x00lee", ""], ids=["65_characters", "nul", "empty"])
def test_a_reviewer_name_the_store_cannot_keep_is_one_review_error(engine, scores: Path, reviewer: str) -> None:
    """The Python API takes any reviewer string. PostgreSQL refuses one longer than the 64 characters
    of the reviewer columns or holding NUL (SQLite kept them): refused alike on both, nothing written."""
    import_scores(engine, scores)
    case_id = list_queue(engine).rows["case_id"][0]
    record_decision(engine, case_id, "dr_lee", "confirm")
    for write in (lambda: claim_case(engine, case_id, reviewer),
                  lambda: record_decision(engine, case_id, reviewer, "dismiss", override=True),
                  lambda: undo_last(engine, case_id, reviewer, override=True),
                  lambda: add_note(engine, case_id, reviewer, "a second opinion")):
        with pytest.raises(ReviewError, match="reviewer name must be 1-64 characters"):
            write()
    assert [e.action for e in case_events(engine, case_id)] == ["confirm"]


def test_claims_keep_two_reviewers_apart(engine, scores: Path) -> None:
    import_scores(engine, scores)
    case_id = list_queue(engine).rows["case_id"][0]
    assert claim_case(engine, case_id, "dr_lee")
    assert list_queue(engine).rows.set_index("case_id").loc[case_id, "claimed_by"] == "dr_lee"
    assert not claim_case(engine, case_id, "dr_kim")
    with pytest.raises(ClaimError, match="claimed by dr_lee"):
        record_decision(engine, case_id, "dr_kim", "confirm")
    assert claim_case(engine, case_id, "dr_lee")  # extending one's own claim
    assert release_case(engine, case_id, "dr_lee")
    assert claim_case(engine, case_id, "dr_kim", minutes=0)  # claims that expire at once
    assert claim_case(engine, case_id, "dr_lee")  # ... can be taken over
    assert [e.action for e in case_events(engine, case_id)] == ["claim", "claim", "release", "claim", "claim"]


def test_concurrent_claims_have_exactly_one_winner(url: str, scores: Path) -> None:
    import_scores(make_engine(url), scores)
    case_id = list_queue(make_engine(url)).rows["case_id"][0]
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def worker(i: int) -> None:
        eng = make_engine(url)  # one engine (pool) per reviewer, like separate app sessions
        barrier.wait()
        results.append(claim_case(eng, case_id, f"reviewer{i}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


_WRITER = """
import sys
from medssl.review import make_engine, record_decision
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
case_ids = sys.argv[4:]
eng = make_engine(url)
for i in range(n):
    record_decision(eng, case_ids[i % len(case_ids)], name, "assign_class", label=f"{name}-{i}", override=True)
"""


def test_many_threads_and_processes_saving_at_once_lose_nothing(url: str, scores: Path) -> None:
    """3 processes (given the store's URL: the same SQLite file or PostgreSQL database) and 6 threads."""
    engine = make_engine(url)
    import_scores(engine, scores)
    case_ids = list_queue(engine).rows["case_id"].tolist()[:4]
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, url, f"proc{p}", "25", *case_ids])
        for p in range(3)
    ]
    barrier = threading.Barrier(6)

    def worker(t: int) -> None:
        eng = make_engine(url)
        barrier.wait()
        for i in range(25):
            # override: writers decide over each other's decisions on purpose (issue 16 asks first otherwise)
            record_decision(eng, case_ids[i % 4], f"thread{t}", "assign_class", label=f"thread{t}-{i}", override=True)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    with engine.connect() as conn:
        labels = {r[0] for r in conn.execute(text("SELECT label FROM review_events"))}
    expected = {f"{who}-{i}" for who in [*(f"thread{t}" for t in range(6)), *(f"proc{p}" for p in range(3))]
                for i in range(25)}
    assert labels == expected and len(expected) == 225
    from medssl.review.chain import verify_chain

    report = verify_chain(engine)  # one unbroken hash chain although 9 writers appended at once
    assert report.ok and report.n_events == 225, report


def test_users_cli_add_and_list(url: str, monkeypatch, capsys) -> None:
    db = url
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-pass-9\n"))
    assert main(["users", "add", "dr_lee", "--role", "clinician", "--password-stdin", "--db", db]) == 0
    assert "s3cret" not in capsys.readouterr().err
    assert main(["users", "list", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.split() == ["name", "role", "created_at", "dr_lee", "clinician", *out.split()[5:]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-pass-9\n"))
    assert main(["users", "add", "dr_lee", "--role", "clinician", "--password-stdin", "--db", db]) == 2
    assert "already exists" in capsys.readouterr().err
    account = authenticate(make_engine(db), "dr_lee", "s3cret-pass-9")
    assert account is not None and (account.name, account.role) == ("dr_lee", "clinician")
    assert authenticate(make_engine(db), "dr_lee", "s3cret-pass-8") is None  # the password really is checked


def test_users_add_without_a_terminal_says_how_to_pass_the_password(url: str) -> None:
    db = url
    cmd = [sys.executable, "-m", "medssl", "users", "add", "dr_lee", "--role", "clinician", "--db", db]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--password-stdin" in done.stderr.strip().splitlines()[-1]
    piped = subprocess.run([*cmd, "--password-stdin"], input="lee-password\n", capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr


@pytest.mark.parametrize("kind", ["unknown_kind", "not_a_store", "unreachable", "missing_driver"])
def test_unusable_db_urls_end_in_one_error_line(review_backend: str, request, tmp_path: Path, capsys, kind: str) -> None:
    not_db = tmp_path / "notes.txt"
    not_db.write_text("not a database\n" * 100)
    if review_backend == "sqlite":
        url, expected = {
            "unknown_kind": ("garbage://dr_lee:s3cret@host/db", "unknown database kind 'garbage'"),
            "not_a_store": (f"sqlite:///{not_db}", "file is not a database"),
            "unreachable": (f"sqlite:///{not_db}/review.db", "cannot create the folder"),
            # was a bare traceback (ModuleNotFoundError: pysqlcipher3)
            "missing_driver": (f"sqlite+pysqlcipher:///{tmp_path / 'r.db'}", "use sqlite:///path/review.db"),
        }[kind]
    else:
        from pg_server import _free_port

        server = request.getfixturevalue("pg_server")
        url, expected = {
            "unknown_kind": (server.url(role="nobody"), 'role "nobody" does not exist'),
            "not_a_store": (server.url(db="no_such_db"), 'database "no_such_db" does not exist'),
            "unreachable": (f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/review", "Connection refused"),
            # was "install it, e.g. pip install 'medssl[postgres]'", which installs psycopg, not psycopg2
            "missing_driver": (f"postgresql+psycopg2://postgres:s3cret@127.0.0.1:{server.port}/postgres",
                               "use postgresql+psycopg://"),
        }[kind]
    assert main(["users", "list", "--db", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medssl: error: --db") and expected in err[0]
    assert "s3cret" not in err[0]  # a password in the URL is never echoed
    assert not_db.read_text() == "not a database\n" * 100  # left as it was


def test_sign_out_does_not_deadlock_with_a_writer_on_one_of_its_cases(url: str, scores: Path, request) -> None:
    """Sign-out releases every claim of a reviewer in one transaction. Every writer locks its case
    row, then the hash chain (PostgreSQL: an advisory lock). Sign-out used to lock case A, append
    A's release (taking the chain lock), then wait for case B's row: a writer holding B and
    waiting for the chain lock closed a cycle, and PostgreSQL aborted a transaction with
    "deadlock detected". Here that writer is a plain connection that takes B's row, waits until
    sign-out blocks, then takes the chain lock as medssl's writers do. (SQLite's BEGIN IMMEDIATE
    runs one writer at a time: the plain writer holds the write lock and sign-out waits for it.)"""
    from medssl.review import release_claims
    from medssl.review.chain import _PG_CHAIN_LOCK

    engine = make_engine(url)
    import_scores(engine, scores)
    a, b = sorted(list_queue(engine).rows["case_id"].tolist()[:2])
    assert claim_case(engine, a, "dr_lee") and claim_case(engine, b, "dr_lee")
    writer = engine.connect()
    writer.exec_driver_sql("SELECT 1")  # BEGIN (SQLite: BEGIN IMMEDIATE, the write lock)
    writer.execute(text("SELECT case_id FROM cases WHERE case_id = :c" + (" FOR UPDATE" if engine.dialect.name == "postgresql" else "")), {"c": b})
    released: list[object] = []
    signing_out = threading.Thread(target=lambda: released.append(_result(lambda: release_claims(make_engine(url), "dr_lee"))))
    signing_out.start()
    if engine.dialect.name == "postgresql":
        _wait_for_lock_waiters(url, 1)  # sign-out waits first, so its deadlock check (after 1 s) would run first
        writer.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_CHAIN_LOCK})
    writer.commit()
    writer.close()
    signing_out.join(timeout=60)
    assert released == [2], released
    assert [e.action for e in case_events(engine, a)][-1] == "release" and [e.action for e in case_events(engine, b)][-1] == "release"


def _result(call):
    """``call()``, or the exception it raised (a thread's outcome)."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 (reported by the test's assertion)
        return exc


def _wait_for_lock_waiters(url: str, n: int) -> None:
    """Until ``n`` sessions of the store's PostgreSQL database wait for a lock (then a moment more).
    Autocommit: pg_stat_activity is read once per transaction."""
    with make_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
        for _ in range(600):  # 30 s at most (a loaded machine)
            waiting = watch.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         "AND datname = current_database()")).scalar_one()
            if waiting >= n:
                break
            time.sleep(0.05)
    assert waiting == n
    time.sleep(0.2)


def test_a_score_import_does_not_deadlock_with_sign_out(url: str, scores: Path, tmp_path: Path) -> None:
    """Sign-out locks its cases' rows in case id order; a score import upserts (locks) the rows of
    its file. In the file's order, a file listing B before A deadlocked with a sign-out holding A
    and waiting for B (PostgreSQL aborted one: "deadlock detected"). Here a plain writer holds A's
    row until sign-out and then the import wait behind it; on SQLite all three queue on the write lock."""
    from medssl.review import release_claims

    engine = make_engine(url)
    import_scores(engine, scores)
    a, b = sorted(list_queue(engine).rows["case_id"].tolist()[:2])
    assert claim_case(engine, a, "dr_lee") and claim_case(engine, b, "dr_lee")
    df = pd.read_parquet(scores)
    backwards = tmp_path / "backwards.parquet"  # the same cases, re-scored, B listed before A
    df.sort_values("case_id", ascending=False).assign(anomaly_score=df["anomaly_score"] + 1).to_parquet(backwards)
    writer = engine.connect()
    writer.execute(text("SELECT case_id FROM cases WHERE case_id = :c" + (" FOR UPDATE" if engine.dialect.name == "postgresql" else "")), {"c": a})
    outcomes: dict[str, object] = {}
    signing_out = threading.Thread(target=lambda: outcomes.update(sign_out=_result(lambda: release_claims(make_engine(url), "dr_lee"))))
    importing = threading.Thread(target=lambda: outcomes.update(imported=_result(
        lambda: import_scores(make_engine(url), backwards, data_dir=scores.parent))))
    signing_out.start()
    if engine.dialect.name == "postgresql":
        _wait_for_lock_waiters(url, 1)
    importing.start()
    if engine.dialect.name == "postgresql":
        _wait_for_lock_waiters(url, 2)
    writer.commit()
    writer.close()
    signing_out.join(timeout=60)
    importing.join(timeout=60)
    assert outcomes == {"sign_out": 2, "imported": 60}, outcomes
    assert get_case(engine, a)["score"] == pytest.approx(float(df.set_index("case_id").loc[a, "anomaly_score"]) + 1)


_OPENER = """
import pathlib, sys, time
from medssl.review import make_engine
folder, i, url = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
(folder / f"ready{i}").touch()
while not (folder / "go").exists():  # every process imported medssl: now all open the store at once
    time.sleep(0.01)
make_engine(url).dispose()
"""


def test_many_processes_opening_a_new_store_at_once_all_succeed(url: str, scores: Path, tmp_path: Path) -> None:
    """App workers, a scoring job and the CLI may open a store that does not exist yet at the same
    moment. On PostgreSQL some of them failed creating the tables ('duplicate key value violates
    unique constraint "pg_type_typname_nsp_index"') or the triggers ('trigger ... already exists');
    SQLite's BEGIN IMMEDIATE ran them one after the other."""
    procs = [subprocess.Popen([sys.executable, "-c", _OPENER, str(tmp_path), str(i), url],
                              stderr=subprocess.PIPE, text=True) for i in range(6)]
    for _ in range(2400):
        if len(list(tmp_path.glob("ready*"))) == len(procs) or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    (tmp_path / "go").touch()
    errors = [p.communicate(timeout=120)[1].strip().splitlines()[-1:] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    engine = make_engine(url)
    import_scores(engine, scores)
    case_id = list_queue(engine).rows["case_id"][0]
    record_decision(engine, case_id, "dr_lee", "confirm")
    with pytest.raises(DBAPIError, match="append-only"):  # the guards are in place
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM review_events"))


def test_tied_cases_are_queued_in_the_same_order_on_every_backend(engine, scores: Path, tmp_path: Path) -> None:
    """Cases with the same score (duplicate images, identical transactions) are queued by case id.
    PostgreSQL sorted those ids by the server's collation (en_US: case and punctuation ignored at
    first), SQLite by code point, so paging and "save and next" walked tied cases in another order
    on each backend. The test server sorts text by an en-US collation (tests/pg_server.py)."""
    df = pd.read_parquet(scores)
    top = df[df["flagged"]].sort_values("anomaly_score", ascending=False).index[:4]
    tied_ids = ["b 0", "a_1", "B-1", "a-2"]  # code point order: B-1, a-2, a_1, b 0; en-US: a_1, a-2, b 0, B-1
    df.loc[top, "case_id"] = tied_ids
    df.loc[top, "patient_id"] = tied_ids
    df.loc[top, "anomaly_score"] = df["anomaly_score"].max() + 1.0
    tied = tmp_path / "tied.parquet"
    df.to_parquet(tied, index=False)
    import_scores(engine, tied, data_dir=scores.parent)
    queue = list_queue(engine, page_size=2)
    assert queue.rows["case_id"].tolist() == ["B-1", "a-2"]
    assert list_queue(engine, page=2, page_size=2).rows["case_id"].tolist() == ["a_1", "b 0"]
    from medssl.review import next_open_case

    assert next_open_case(engine, "a-2") == "a_1"
