"""The Fine-tune page's own failures (issue 16): nothing stray on load, a failed fine-tune says why
in the open, and a bad output folder is an error on the page, never an exception in the server."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medssl.review import add_user, make_engine
from app_text import shown

APP = str(Path(__file__).resolve().parents[1] / "apps" / "Home.py")
TIMEOUT = 60


@pytest.fixture()
def data_scientist(tmp_path: Path, monkeypatch) -> AppTest:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    add_user(make_engine(url), "ana", "data_scientist", "ana-password")
    monkeypatch.setenv("MEDSSL_DB", url)
    for name in ("MEDSSL_CHECKPOINT", "MEDSSL_DATA_DIR", "MEDSSL_EMBEDDINGS"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input[0].input("ana")
    at.text_input[1].input("ana-password")
    at.button[0].click().run()
    at.switch_page("views/finetune.py").run()
    assert not at.exception, at.exception
    return at


def _elements(node) -> list:
    """Every element under ``node`` (depth first)."""
    found = []
    for child in getattr(node, "children", {}).values():
        found += [child, *_elements(child)]
    return found


def test_the_page_shows_no_stray_docstring_on_load(data_scientist: AppTest) -> None:
    at = data_scientist
    shown = _elements(at.main)
    # Streamlit "magic" renders a bare expression statement's value: a DeltaGenerator's doc string
    assert [e.type for e in shown if e.type in ("help_info", "doc_string")] == []
    assert not [e for e in shown if "DeltaGenerator" in str(getattr(e, "value", ""))]
    assert [c.value for c in at.caption if c.value == "None yet."]  # the empty registry says so


def _fill(at: AppTest, checkpoint: str, data_dir: str, out: str) -> AppTest:
    at.text_input[0].input(checkpoint)
    at.text_input[1].input(data_dir).run()
    at.radio[0].set_value("the manifest's own labels")
    at.text_input[2].input(out).run()
    next(b for b in at.button if b.label == "Run fine-tune").click().run()
    return at


def test_an_output_folder_under_a_file_is_an_error_on_the_page(data_scientist: AppTest, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    at = _fill(data_scientist, str(tmp_path / "checkpoint.pt"), str(tmp_path), str(blocker / "run"))
    assert not at.exception, at.exception
    errors = [shown(e.value) for e in at.error]
    assert len(errors) == 1 and f"{blocker} is a file" in errors[0], errors
    assert not (blocker.parent / "run").exists()


def test_a_failed_fine_tune_says_why_outside_the_collapsed_status(data_scientist: AppTest, tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    at = _fill(data_scientist, str(tmp_path / "checkpoint.pt"), str(tmp_path / "no_data"), str(tmp_path / "run"))
    assert not at.exception, at.exception
    status = [e for e in _elements(at.main) if e.type == "status"]
    assert [(s.proto.label, s.proto.expanded) for s in status] == [("Fine-tune failed", True)]
    # the reason is an error box of the page itself, not only inside the status box
    errors = [shown(e.value) for e in at.main.children.values() if e.type == "error"]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"Fine-tune failed: {tmp_path / 'checkpoint.pt'} is not a readable medssl checkpoint")
