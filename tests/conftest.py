"""Shared fixtures. Real data lives in ../shared/data relative to the repo root."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; fails (with the reason) if the checkout has none beside it.

    A skip here would turn every real-data test green-by-absence wherever the data went missing,
    so a missing data folder is an error, not a skipped test.
    """
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA} (the tests read the real data sets from there; "
                    "see README.md and datasets/README.md)", pytrace=False)
    return SHARED_DATA


# ---- the review store on SQLite and on a real PostgreSQL (tests/pg_server.py) ----------------------------

_DB_NUMBER = itertools.count()


@pytest.fixture(scope="session")
def pg_server():
    """One throw-away PostgreSQL server for the whole session (started on first use, stopped at the
    end), or the reason there is none (a str: the postgresql variants skip with it)."""
    from pg_server import start_server

    server = start_server()
    if isinstance(server, str):
        yield server
        return
    yield next(server)
    next(server, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def review_backend(request) -> str:
    """The review store's backend: every test using it runs on both (ids ``[sqlite]``, ``[postgresql]``)."""
    if request.param == "postgresql" and isinstance(request.getfixturevalue("pg_server"), str):
        pytest.skip(request.getfixturevalue("pg_server"))
    return request.param


@pytest.fixture()
def new_review_db(request, review_backend: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """A factory: ``new_review_db("review")`` is the URL of a fresh, empty store on the backend:
    ``sqlite:///TMP/review.db`` or a new database on the session's server (dropped after the test)."""
    made: list[str] = []

    def new(name: str = "review") -> str:
        if review_backend == "sqlite":
            return f"sqlite:///{tmp_path / f'{name}.db'}"
        db = f"t{next(_DB_NUMBER)}_{name}"
        made.append(db)
        return request.getfixturevalue("pg_server").create_database(db)

    yield new
    for db in made:
        request.getfixturevalue("pg_server").drop_database(db)
