"""The app shows every value from data as plain text, never as Markdown or HTML: a score file whose
patient id is ``![x](http://host/leak.png?case=...)`` (the probe's case) must not make the reviewer's
browser fetch anything. Checked with AppTest on the queue and the case page: every Markdown-bearing
element (titles, captions, st.write, alerts, subheaders, button labels) renders to no image, link
or HTML, and the hostile strings are shown character for character."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app_text import active_markup, shown
from medssl.review import add_user, import_scores, make_engine, record_decision
from review_scores import build_real_scores

APP = str(Path(__file__).resolve().parents[1] / "apps" / "Home.py")
LEAK = "http://127.0.0.1:9/leak.png"
PATIENT = f"![x]({LEAK}?case=1)"
CASE = f"[click me]({LEAK}?case=2)"
PREDICTED = f"<img src={LEAK}?case=3>"
LABEL = f"![l]({LEAK}?label)"
NOTE = f"**bold** <script>alert(1)</script> {LEAK}?note"
REVIEWER = f"![r]({LEAK}?reviewer)"  # printable, no spaces: a valid account name


@pytest.fixture()
def hostile_store(shared_data: Path, tmp_path: Path, monkeypatch, new_review_db) -> str:
    """The hostile strings in a SQLite or PostgreSQL store (tests/conftest.py ``new_review_db``)."""
    scores = build_real_scores(shared_data, tmp_path / "data", n_cases=20, flag_top=6)
    df = pd.read_parquet(scores)
    top = df["anomaly_score"].idxmax()
    df.loc[top, ["case_id", "patient_id", "predicted_label"]] = [CASE, PATIENT, PREDICTED]
    df.to_parquet(scores, index=False)
    url = new_review_db("review")
    engine = make_engine(url)
    add_user(engine, REVIEWER, "clinician", "reviewer-password")
    import_scores(engine, scores)
    record_decision(engine, CASE, REVIEWER, "assign_class", label=LABEL, note=NOTE)
    monkeypatch.setenv("MEDSSL_DB", url)
    monkeypatch.delenv("MEDSSL_EMBEDDINGS", raising=False)
    return url


def _markdown_sources(at: AppTest) -> list[str]:
    """Every string of the page that Streamlit renders as Markdown."""
    elements = [*at.title, *at.header, *at.subheader, *at.caption, *at.markdown,
                *at.info, *at.warning, *at.error, *at.success]
    return [e.value for e in elements] + [b.label for b in at.button]


def _assert_inert(at: AppTest) -> None:
    active = {src: active_markup(src) for src in _markdown_sources(at) if active_markup(src)}
    assert active == {}, active


def test_hostile_strings_from_a_score_file_and_the_trail_render_as_text(hostile_store: str) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input[0].input(REVIEWER)
    at.text_input[1].input("reviewer-password")
    at.button[0].click().run()
    assert not at.exception, at.exception

    # the queue: ids and the label as plain text cells (st.text), nothing active anywhere
    assert [t.value for t in at.title] == ["Review queue"]
    _assert_inert(at)
    cells = [t.value for t in at.text]
    assert CASE in cells and PATIENT in cells and f"labelled ({LABEL})" in cells
    assert f"Signed in as {REVIEWER} (clinician)" in [shown(c.value) for c in at.caption]

    # the case page: title, caption, predicted class, status, the trail
    at.button(key=f"open-{CASE}").click().run()
    assert not at.exception, at.exception
    _assert_inert(at)
    assert [shown(t.value) for t in at.title] == [f"Case {CASE}"]
    captions = [shown(c.value) for c in at.caption]
    assert any(c.startswith(f"patient {PATIENT} · imaging · model ") for c in captions), captions
    texts = [shown(m.value) for m in at.markdown]
    assert f"Model's predicted class: {PREDICTED} (p = " in " ".join(texts)
    assert f"Status: labelled, label {LABEL}" in texts
    assert f"Case {CASE} is not in " in " ".join(shown(i.value) for i in at.info)  # its data is not there
    trail = at.dataframe[0].value
    assert trail[["reviewer", "label", "note"]].to_dict("records") == [{"reviewer": REVIEWER, "label": LABEL, "note": NOTE}]
