"""The Streamlit review app, page by page, with streamlit.testing.v1.AppTest on a real score file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medssl.review import add_user, case_events, case_state, make_engine
from app_text import shown
from review_app import APP, TIMEOUT, real_scores, store  # noqa: F401 (pytest fixtures)
from review_app import flagged as _flagged, signed_in as _signed_in

# the fixtures real_scores and store come from review_app (imported for pytest to find them)


def test_signed_out_visitors_see_only_the_sign_in_page(store: str) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert [t.value for t in at.title] == ["medssl review"]
    assert [t.label for t in at.text_input] == ["Name", "Password"]
    with pytest.raises(ValueError, match=r"Known pages: \['[^,]*/apps/views/sign_in.py'\]"):
        at.switch_page("views/queue.py")  # the only page registered for a visitor is the sign-in
    at.text_input[0].input("dr_lee")
    at.text_input[1].input("not-the-password")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong name or password."]
    assert "account" not in at.session_state


def test_sign_out_forgets_the_account_and_locks_the_pages_again(store: str) -> None:
    at = _signed_in("dr_lee", "lee-password")
    assert at.session_state["account"].name == "dr_lee"
    at.switch_page("views/sign_out.py").run()
    assert "account" not in at.session_state
    assert [t.label for t in at.text_input] == ["Name", "Password"]
    with pytest.raises(ValueError, match="Known pages"):
        at.switch_page("views/queue.py")


def test_queue_lists_the_flagged_cases_of_a_real_score_file(store: str, real_scores: Path) -> None:
    at = _signed_in("dr_lee", "lee-password")
    assert [t.value for t in at.title] == ["Review queue"]
    assert at.caption[0].value == "12 flagged case(s) · page 1 of 1"
    open_buttons = [b.key for b in at.button if b.key and b.key.startswith("open-")]
    assert open_buttons == [f"open-{c}" for c in _flagged(real_scores)]
    at.selectbox[2].set_value(10).run()  # ten per page -> two pages
    assert at.caption[0].value == "12 flagged case(s) · page 1 of 2"
    at.text_input[0].input(_flagged(real_scores)[4]).run()  # the patient filter
    assert [b.key for b in at.button if b.key and b.key.startswith("open-")] == [f"open-{_flagged(real_scores)[4]}"]


def test_a_decision_is_stored_and_shown_after_a_rerun(store: str, real_scores: Path) -> None:
    top = _flagged(real_scores)[0]
    at = _signed_in("dr_lee", "lee-password")
    at.button(key=f"open-{top}").click().run()
    assert not at.exception, at.exception
    assert [shown(t.value) for t in at.title] == [f"Case {top}"]
    assert at.slider[0].label.startswith("Level") and at.slider[1].label == "Window width"
    assert len(at.get("plotly_chart")) == 1  # the image itself (plotly: zoom and pan)
    at.radio[0].set_value("assign_class")
    at.text_input[0].input("1")
    at.text_area[0].input("consolidation, left lower lobe")
    at.button[0].click().run()  # the form's Save
    assert not at.exception, at.exception
    engine = make_engine(store)
    state = case_state(engine, top)
    assert (state.status, state.label, state.decided_by) == ("labelled", "1", "dr_lee")
    actions = [e.action for e in case_events(engine, top)]  # Open claimed it; the decision released it (issue 16)
    assert actions[-2:] == ["assign_class", "release"] and set(actions[:-2]) == {"claim"}, actions
    at.run()  # a plain rerun still shows it
    assert "Status: labelled, label 1" in [shown(m.value) for m in at.markdown]
    trail = at.dataframe[0].value
    assert trail[["reviewer", "action", "label", "note"]].to_dict("records") == [
        {"reviewer": "dr_lee", "action": "assign_class", "label": "1", "note": "consolidation, left lower lobe"}]
    undo = next(b for b in at.button if b.label == "Undo last decision")
    assert undo.disabled  # only the claim holder can undo, and nobody holds it now
    next(b for b in at.button if b.label == "Claim this case").click().run()
    next(b for b in at.button if b.label == "Undo last decision").click().run()
    assert case_state(engine, top).status == "open"


def test_clinicians_do_not_get_the_data_scientist_pages(store: str) -> None:
    at = _signed_in("dr_lee", "lee-password")
    with pytest.raises(ValueError, match="Could not find a navigation page") as info:
        at.switch_page("views/finetune.py")
    assert "queue.py" in str(info.value) and "embedding_map" not in str(info.value)
    ds = _signed_in("ana", "ana-password")
    ds.switch_page("views/finetune.py").run()
    assert not ds.exception, ds.exception
    assert [t.value for t in ds.title] == ["Fine-tune with few labels"]


def test_embedding_map_and_similar_cases(store: str, real_scores: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDSSL_EMBEDDINGS", str(real_scores.parent / "embeddings.parquet"))
    flagged = _flagged(real_scores)
    at = _signed_in("ana", "ana-password")
    at.switch_page("views/embedding_map.py").run()
    assert not at.exception, at.exception
    assert at.caption[0].value == "60 cases; 12 flagged. Click a point to select it."
    assert at.selectbox[0].options[0] == flagged[0]  # no point picked: highest score first
    at.selectbox[0].set_value(flagged[1])
    next(b for b in at.button if b.label == "Open case").click().run()
    assert [shown(t.value) for t in at.title] == [f"Case {flagged[1]}"]


def test_window_level_on_a_real_image(real_scores: Path) -> None:
    import numpy as np

    from medssl.data import read_manifest
    from medssl.review.case_view import default_window, image_frames, window_level

    row = read_manifest(real_scores.parent).iloc[0].to_dict()
    frames = image_frames(row)
    raw = np.load(Path(row["path"]))["val_images"][0]
    assert frames.shape == (1, 28, 28) and np.array_equal(frames[0], raw.astype(np.float32))
    shown = window_level(frames[0], center=127.5, width=255.0)  # the full 8-bit range: identity
    assert np.array_equal(shown, raw)
    narrow = window_level(frames[0], center=100.0, width=50.0)  # 75 -> 0, 125 -> 255, clipped outside
    assert np.array_equal(narrow, np.round(np.clip((raw.astype(float) - 75.0) / 50.0, 0, 1) * 255).astype(np.uint8))
    lo, hi = np.percentile(raw, [0.5, 99.5])
    assert default_window(frames) == pytest.approx(((lo + hi) / 2, hi - lo))


@pytest.mark.slow
def test_fine_tune_page_runs_a_small_job_and_registers_the_model(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    import json

    from medssl.data import ErrorLog, write_manifest
    from medssl.data.imaging.npz import scan_npz
    from medssl.review.model_registry import registered_models
    from medssl.train.pretrain import pretrain

    manifest = scan_npz(shared_data / "imaging" / "pneumoniamnist_trainval.npz", ErrorLog())
    manifest = pd.concat([manifest[manifest["split"] == "train"].iloc[::20],
                          manifest[manifest["split"] == "val"].iloc[::5]], ignore_index=True)
    write_manifest(manifest, tmp_path / "data")
    checkpoint = pretrain(tmp_path / "data", tmp_path / "pretrain",
                          {"max_steps": 1, "batch_size": 16, "accelerator": "cpu"})
    url = f"sqlite:///{tmp_path / 'review.db'}"
    add_user(make_engine(url), "ana", "data_scientist", "ana-password")
    monkeypatch.setenv("MEDSSL_DB", url)

    at = _signed_in("ana", "ana-password")
    at.switch_page("views/finetune.py").run()
    at.text_input[0].input(str(checkpoint))
    at.text_input[1].input(str(tmp_path / "data")).run()
    at.radio[0].set_value("the manifest's own labels")
    at.number_input[0].set_value(10)  # ten labels per class
    at.text_input[2].input(str(tmp_path / "ft")).run()
    next(b for b in at.button if b.label == "Run fine-tune").click().run(timeout=600)
    assert not at.exception and not at.error, (at.exception, at.error)
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["n_labelled"] == 20 and metrics["mode"] == "linear"  # auto on images, 10 labels a class: the probe
    shown = {m.label: m.value for m in at.metric}
    assert shown["auroc"] == f"{metrics['validation']['auroc']:.3f}"
    next(b for b in at.button if b.label == "Register this model for scoring").click().run()
    models = registered_models(make_engine(url))
    assert models[["path", "registered_by"]].to_dict("records") == [
        {"path": str((tmp_path / "ft" / "model.pt").resolve()), "registered_by": "ana"}]


def test_medssl_app_imports_scores_and_serves(new_review_db, real_scores: Path) -> None:
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from medssl.review import count_cases

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = new_review_db("review")  # a SQLite file or a PostgreSQL database (tests/conftest.py)
    proc = subprocess.Popen([sys.executable, "-m", "medssl", "app", "--db", url, "--scores", str(real_scores),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.time() + 90, None
        while time.time() < deadline and proc.poll() is None:
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        assert health == b"ok", proc.stderr.read() if proc.poll() is not None else "no answer"
        assert count_cases(make_engine(url)) == 60
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # stopping `medssl app` stops the server itself: nothing is left holding the port
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "a Streamlit server outlived `medssl app`"


def test_app_refuses_a_missing_data_folder_before_touching_the_store(tmp_path: Path, real_scores: Path, capsys) -> None:
    from medssl.cli import main
    from medssl.review import count_cases

    db = tmp_path / "review.db"
    argv = ["app", "--db", f"sqlite:///{db}", "--scores", str(real_scores), "--import-only"]
    assert main([*argv, "--data", str(tmp_path / "no_such_folder")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"medssl: error: --data {tmp_path / 'no_such_folder'} is not a folder; pass the DATA_DIR the scores were computed from"]
    assert not db.exists()  # nothing imported, no store created
    assert main([*argv, "--data", str(real_scores.parent)]) == 0
    assert count_cases(make_engine(f"sqlite:///{db}")) == len(pd.read_parquet(real_scores))


def test_after_one_decision_the_other_rows_stay_open_and_unclaimed(store: str, real_scores: Path) -> None:
    """pandas 3 turns a column built from [str, None] into a str column holding NaN: the queue showed
    'open (nan)' / claimed by 'nan' on every other row and Open no longer claimed a case."""
    from medssl.review import claim_case, list_queue, record_decision

    engine = make_engine(store)
    first, second = _flagged(real_scores)[:2]
    assert claim_case(engine, first, "ana")
    record_decision(engine, first, "ana", "assign_class", label="1")
    rows = list_queue(engine).rows.set_index("case_id")
    assert rows.loc[first, "label"] == "1" and pd.isna(rows.loc[second, "label"])
    at = _signed_in("dr_lee", "lee-password")
    texts = [shown(t.value) for t in at.text]
    assert "open" in texts and "nan" not in " ".join(texts), texts
    at.button(key=f"open-{second}").click().run()
    assert not at.exception, at.exception
    assert list_queue(engine).rows.set_index("case_id").loc[second, "claimed_by"] == "dr_lee"  # Open claimed it
