"""Accounts: login throttling (per account, per address, kept in the store; a clock is passed, no
sleeping), printable names only, binary stdin passwords, each on SQLite and on a real PostgreSQL
(tests/conftest.py ``new_review_db``); and the SQLite store file created 0600 (a PostgreSQL store has
no file of ours: the server keeps its own data directory)."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from medssl.cli import main
from medssl.review import UserError, add_user, authenticate, list_users, make_engine

T0 = dt.datetime(2026, 12, 2, 9, 0, 0)


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture()
def url(new_review_db) -> str:
    return new_review_db("review")


@pytest.fixture()
def engine(url: str):
    eng = make_engine(url)
    add_user(eng, "dr_lee", "clinician", "lee-password")
    add_user(eng, "dr_kim", "clinician", "kim-password")
    yield eng
    eng.dispose()


def test_failed_sign_ins_make_the_account_wait_longer_and_longer(engine, url: str) -> None:
    for i in range(5):  # the first five failures cost nothing
        assert authenticate(engine, "dr_lee", f"guess-{i}", now=_at(i)) is None
    with pytest.raises(UserError, match=r"try again after 09:00:06 UTC \(in 1 s\)"):
        authenticate(engine, "dr_lee", "lee-password", now=_at(5))  # the right password, refused
    assert authenticate(engine, "dr_lee", "guess-5", now=_at(6)) is None  # waited 2 s: one more try
    with pytest.raises(UserError, match=r"after 09:00:10 UTC \(in 3 s\)"):  # now 4 s after the 6th
        authenticate(engine, "dr_lee", "lee-password", now=_at(7))
    # the waits survive an app restart (they are rows of the store) ...
    restarted = make_engine(url)
    with pytest.raises(UserError, match="Too many failed sign-ins"):
        authenticate(restarted, "dr_lee", "lee-password", now=_at(9))
    # ... and do not touch another account
    assert authenticate(restarted, "dr_kim", "kim-password", now=_at(9)).name == "dr_kim"
    assert authenticate(restarted, "dr_lee", "lee-password", now=_at(10)).name == "dr_lee"
    # a success resets the account's count
    assert authenticate(restarted, "dr_lee", "wrong", now=_at(11)) is None
    assert authenticate(restarted, "dr_lee", "lee-password", now=_at(11.5)).name == "dr_lee"


def test_the_probe_forty_wrong_passwords_then_the_right_one(engine) -> None:
    refused = 0
    for i in range(40):  # one attempt a second, as a script would
        try:
            authenticate(engine, "dr_lee", f"guess-{i}", now=_at(i))
        except UserError:  # ThrottledError
            refused += 1
    assert refused >= 30
    with pytest.raises(UserError, match="Too many failed sign-ins"):
        authenticate(engine, "dr_lee", "lee-password", now=_at(40))


def test_one_address_guessing_many_accounts_is_throttled_too(engine) -> None:
    for i in range(20):  # 20 names, each failing once: no account reaches its limit
        assert authenticate(engine, f"user{i}", "guess", address="10.1.2.3", now=_at(i)) is None
    with pytest.raises(UserError, match=r"after 09:00:21 UTC \(in 1 s\)"):
        authenticate(engine, "dr_lee", "lee-password", address="10.1.2.3", now=_at(20))
    # another address is not affected, and the address count forgets after an hour
    assert authenticate(engine, "dr_lee", "lee-password", address="10.9.9.9", now=_at(20)).name == "dr_lee"
    assert authenticate(engine, "dr_lee", "lee-password", address="10.1.2.3", now=_at(3700)).name == "dr_lee"


def test_the_sign_in_page_says_when_to_retry(engine, url: str, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from medssl.review.throttle import record_attempt

    for _ in range(10):  # ten recent failures: the next attempt must wait about a minute
        record_attempt(engine, "dr_lee", None, ok=False)
    monkeypatch.setenv("MEDSSL_DB", url)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "apps" / "Home.py"), default_timeout=60).run()
    at.text_input[0].input("dr_lee")
    at.text_input[1].input("lee-password")
    at.button[0].click().run()
    assert not at.exception
    assert [e.value.split(":")[0] for e in at.error] == ["Too many failed sign-ins"]
    assert "account" not in at.session_state


@pytest.mark.parametrize("name", ["dr\x1b[31mlee", "dr_lee\x1b]0;pwned\x07", "bell\x07", "nul\x00x", "dr\u200blee"])
def test_users_add_refuses_unprintable_names(url: str, capsys, monkeypatch, name: str) -> None:
    import io

    db = url
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-pass-9\n"))
    assert main(["users", "add", name, "--role", "clinician", "--password-stdin", "--db", db]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "printable characters" in err and "\x1b" not in err and "\x07" not in err
    assert list_users(make_engine(db)) == []


@pytest.mark.parametrize("stdin, reason", [
    (b"\xff\xfe\x00\x81binary\n", "not UTF-8 text"),
    (b"pass\x00word-123\n", "control characters"),
    (b"pass\x1b[2Jword\n", "control characters"),
])
def test_users_add_with_binary_stdin_is_one_line(url: str, stdin: bytes, reason: str) -> None:
    db = url
    run = subprocess.run([sys.executable, "-m", "medssl.cli", "users", "add", "dr_lee", "--role", "clinician",
                          "--password-stdin", "--db", db], input=stdin, capture_output=True, timeout=120)
    err = run.stderr.decode().strip().splitlines()
    assert run.returncode == 2 and len(err) == 1 and reason in err[0] and "Traceback" not in run.stderr.decode()
    assert list_users(make_engine(db)) == []


def test_the_store_file_and_its_wal_are_private(tmp_path: Path) -> None:
    path = tmp_path / "review.db"
    old_umask = os.umask(0o022)  # the usual umask, which made the file 0644 before
    try:
        engine = make_engine(f"sqlite:///{path}")
    finally:
        os.umask(old_umask)
    add_user(engine, "dr_lee", "clinician", "lee-password")
    with engine.connect():  # an open connection keeps the -wal and -shm files
        files = [p for p in (path, tmp_path / "review.db-wal", tmp_path / "review.db-shm") if p.exists()]
        assert len(files) == 3
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}
    engine.dispose()


def test_a_world_readable_store_from_before_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "review.db"
    make_engine(f"sqlite:///{path}").dispose()
    os.chmod(path, 0o644)
    make_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("name, address, password", [
    ("dr\x00lee", None, "lee-password"),  # dr_lee's password, but the name is not dr_lee's (nor anyone's)
    ("dr_lee", "10.1.2.3\x00", "wrong-password"),
    ("\x00", "\x00", "\x00"),
], ids=["nul_in_name", "nul_in_address", "nul_everywhere"])
def test_a_nul_character_in_a_sign_in_is_a_counted_failure_not_a_database_error(engine, name: str, address,
                                                                                  password: str) -> None:
    """PostgreSQL text cannot hold a NUL character (SQLite's can): a sign-in name or address with
    one (typed, pasted or sent by a script) is a failed sign-in on both backends, counted by the
    throttle, never a psycopg DataError."""
    for i in range(5):
        assert authenticate(engine, name, password, address=address, now=_at(i)) is None
    with pytest.raises(UserError, match="Too many failed sign-ins"):
        authenticate(engine, name, password, address=address, now=_at(5))
    assert authenticate(engine, "dr_kim", "kim-password", now=_at(5)).name == "dr_kim"
