"""What the AppTest tests of the review app share: the app's entry point, a store holding a real
score file with a clinician and a data scientist, and signing in."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medssl.review import add_user, import_scores, make_engine
from review_scores import build_real_scores

APP = str(Path(__file__).resolve().parents[1] / "apps" / "Home.py")
TIMEOUT = 60


@pytest.fixture(scope="module")
def real_scores(shared_data: Path, tmp_path_factory) -> Path:
    """A real score file (tests/review_scores.py) beside its manifest."""
    return build_real_scores(shared_data, tmp_path_factory.mktemp("data"))


@pytest.fixture()
def store(new_review_db, real_scores: Path, monkeypatch) -> str:
    """A review store (URL, also in $MEDSSL_DB) with dr_lee (clinician), ana (data scientist) and the
    real scores imported: a SQLite file or a database on the session's PostgreSQL server
    (tests/conftest.py), for the ``[sqlite]`` / ``[postgresql]`` variant of each test."""
    url = new_review_db("review")
    engine = make_engine(url)
    add_user(engine, "dr_lee", "clinician", "lee-password")
    add_user(engine, "ana", "data_scientist", "ana-password")
    import_scores(engine, real_scores)
    monkeypatch.setenv("MEDSSL_DB", url)
    monkeypatch.delenv("MEDSSL_EMBEDDINGS", raising=False)
    return url


def signed_in(name: str, password: str) -> AppTest:
    """The app after ``name`` signed in on the sign-in page."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input[0].input(name)
    at.text_input[1].input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def flagged(real_scores: Path) -> list[str]:
    """The flagged case ids of the score file, highest score first."""
    df = pd.read_parquet(real_scores)
    return df[df["flagged"]].sort_values("anomaly_score", ascending=False)["case_id"].tolist()
