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


# ---- issue 18: baseline beside the metrics, Register -> rescore, Label next (a real tiny fine-tune) ----


@pytest.fixture(scope="module")
def pretrained(shared_data: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A real DATA_DIR (PneumoniaMNIST: every 20th train image, every 5th val image) and a checkpoint
    pretrained for one step on it: ``(checkpoint, data_dir)``."""
    import pandas as pd

    from medssl.data import ErrorLog, write_manifest
    from medssl.data.imaging.npz import scan_npz
    from medssl.train.pretrain import pretrain

    root = tmp_path_factory.mktemp("ft18")
    manifest = scan_npz(shared_data / "imaging" / "pneumoniamnist_trainval.npz", ErrorLog())
    manifest = pd.concat([manifest[manifest["split"] == "train"].iloc[::20],
                          manifest[manifest["split"] == "val"].iloc[::5]], ignore_index=True)
    write_manifest(manifest, root / "data")
    checkpoint = pretrain(root / "data", root / "pretrain", {"max_steps": 1, "batch_size": 16, "accelerator": "cpu"})
    return Path(checkpoint), root / "data"


def _button(at: AppTest, prefix: str):
    return next(b for b in at.button if b.label.startswith(prefix))


@pytest.mark.slow
def test_fine_tune_baseline_register_rescore_and_label_next(pretrained, tmp_path: Path, monkeypatch) -> None:
    import json

    import pandas as pd

    from medssl.review import case_events, case_state, import_scores, record_decision
    from medssl.review.label_requests import label_requests
    from medssl.scoring.job import score

    checkpoint, data_dir = pretrained
    # the queue before: the pretrained checkpoint's own scores (no classifier: no predicted_proba)
    first = tmp_path / "first"
    score(checkpoint, data_dir, first / "scores.parquet", embeddings_out=first / "embeddings.parquet")
    url = f"sqlite:///{tmp_path / 'review.db'}"
    eng = make_engine(url)
    add_user(eng, "ana", "data_scientist", "ana-password")
    import_scores(eng, first / "scores.parquet", data_dir)
    old = pd.read_parquet(first / "scores.parquet")
    decided = str(old["case_id"].iloc[0])
    record_decision(eng, decided, "dr_lee", "assign_class", label="1", note="clear consolidation")
    before = [(e.action, e.reviewer, e.label, e.note) for e in case_events(eng, decided)]

    monkeypatch.setenv("MEDSSL_DB", url)
    monkeypatch.setenv("MEDSSL_CHECKPOINT", str(checkpoint))  # the defaults `medssl app --checkpoint/--data` set
    monkeypatch.setenv("MEDSSL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEDSSL_EMBEDDINGS", str(first / "embeddings.parquet"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input[0].input("ana")
    at.text_input[1].input("ana-password")
    at.button[0].click().run()
    at.switch_page("views/finetune.py").run()
    assert at.text_input[0].value == str(checkpoint) and at.text_input[1].value == str(data_dir)
    assert at.text_input[2].value == str(checkpoint.parent / "finetune-app")
    at.radio[0].set_value("the manifest's own labels")
    at.number_input[0].set_value(10)  # ten labels per class
    at.text_input[2].input(str(tmp_path / "ft")).run()
    _button(at, "Run fine-tune").click().run(timeout=600)
    assert not at.exception and not at.error, (at.exception, at.error)

    # the supervised baseline of the same run, beside the model's metrics
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    base = metrics["baseline"]
    assert base["n_train"] == metrics["n_labelled"] == 20
    assert base["validation"]["n"] == metrics["validation"]["n"] > 0
    table = next(d for d in at.dataframe if "supervised baseline" in d.value.columns).value
    row = table.set_index("metric").loc["auroc"]
    assert row["fine-tuned model"] == pytest.approx(metrics["validation"]["auroc"])
    assert row["supervised baseline"] == pytest.approx(base["validation"]["auroc"])
    assert any("label-efficiency" in c.value for c in at.caption)  # no curve yet: the command that draws it

    # Register -> rescore: the queue holds the new model's scores and predictions; the decision stays
    _button(at, "Register this model for scoring").click().run(timeout=600)
    assert not at.exception and not at.error, (at.exception, at.error)
    new = pd.read_parquet(tmp_path / "ft" / "scores.parquet")
    model_id = str(new["model_id"].iloc[0])
    assert (tmp_path / "ft" / "embeddings.parquet").is_file()
    from medssl.review import get_case

    case = get_case(eng, decided)
    assert case["model_id"] == model_id != str(old["model_id"].iloc[0])
    assert case["predicted_proba"] == pytest.approx(float(new.set_index("case_id").loc[decided, "predicted_proba"]))
    assert [(e.action, e.reviewer, e.label, e.note) for e in case_events(eng, decided)] == before
    assert case_state(eng, decided).label == "1"
    assert any(model_id[:12] in s.value for s in at.success)

    # Label next: the embeddings of the rescore are the default; the picks are undecided; sending twice adds nothing
    assert at.text_input[3].value == str(tmp_path / "ft" / "embeddings.parquet")
    at.number_input[1].set_value(5)
    _button(at, "Pick cases to label next").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    picks = next(d for d in at.dataframe if "uncertainty" in d.value.columns).value
    assert len(picks) == 5 and decided not in set(picks["case_id"])
    assert picks["predicted_proba"].notna().all()  # ranked by the new model's probabilities
    _button(at, "Send these 5 cases").click().run()
    _button(at, "Send these 5 cases").click().run()
    requests = label_requests(eng)
    assert requests["case_id"].tolist() == picks["case_id"].tolist() and set(requests["requested_by"]) == {"ana"}
    assert any(s.value.startswith("0 new labelling request(s)") for s in at.success)

    # the queue's Label next filter lists them, in the order asked
    at.switch_page("views/queue.py").run()
    next(t for t in at.toggle if t.label == "Label next").set_value(True).run()
    assert not at.exception, at.exception
    shown_ids = list(dict.fromkeys(t.value for t in at.text if t.value in set(picks["case_id"])))  # case = patient id here
    assert shown_ids == picks["case_id"].tolist()
    assert any(c.value.startswith("5 case(s) to label next") for c in at.caption)
    assert any(model_id[:12] in c.value for c in at.caption)


def _page_errors(at: AppTest) -> list[str]:
    return [shown(e.value) for e in at.main.children.values() if e.type == "error"]


@pytest.mark.slow
def test_register_and_rescore_errors_are_on_the_page(pretrained, data_scientist: AppTest, tmp_path: Path) -> None:
    from medssl.train.finetune import FinetuneConfig, finetune

    checkpoint, data_dir = pretrained
    model = finetune(checkpoint, data_dir, tmp_path / "ft", FinetuneConfig(shots=5))
    at = data_scientist
    # a pretrained checkpoint is not a model for scoring: said on the page, nothing registered
    at.session_state["finetuned_model"] = str(checkpoint)
    at.run()
    _button(at, "Register this model for scoring").click().run()
    assert not at.exception, at.exception
    errors = _page_errors(at)
    assert len(errors) == 1 and errors[0].startswith("Registering failed: "), errors
    # a DATA_DIR without a manifest: registered, then the rescore fails on the page and says what to pass
    at.session_state["finetuned_model"] = str(model)
    at.text_input[1].input(str(tmp_path)).run()
    _button(at, "Register this model for scoring").click().run()
    assert not at.exception, at.exception
    assert [s.proto.label for s in _elements(at.main) if s.type == "status"] == ["Rescoring failed"]
    errors = _page_errors(at)
    assert errors == [f"Rescoring failed: DATA_DIR {tmp_path} holds no manifest.parquet; give the folder "
                      "`medssl ingest --out` wrote"], errors
    # a label-efficiency curve written into the run folder shows beside the metrics
    from medssl.eval.label_efficiency import run_label_efficiency

    table = run_label_efficiency(checkpoint, data_dir, tmp_path / "ft", fractions=[0.05, 1.0], seeds=[0],
                                 modes=["linear"], supervised=False)
    at.run()
    assert not at.exception and not _page_errors(at), _page_errors(at)
    assert "**Label efficiency** (validation AUROC, mean over seeds)" in [m.value for m in at.markdown]
    assert f"From {tmp_path / 'ft' / 'label_efficiency.csv'} (medssl label-efficiency)." in [shown(c.value) for c in at.caption]
    assert sorted(table["fraction"]) == [0.05, 1.0]


def test_label_next_errors_are_on_the_page(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    from medssl.review import import_scores
    from review_scores import build_real_scores

    scores = build_real_scores(shared_data, tmp_path / "data")
    url = f"sqlite:///{tmp_path / 'review.db'}"
    eng = make_engine(url)
    add_user(eng, "ana", "data_scientist", "ana-password")
    import_scores(eng, scores)
    monkeypatch.setenv("MEDSSL_DB", url)
    monkeypatch.setenv("MEDSSL_EMBEDDINGS", str(tmp_path / "gone.parquet"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input[0].input("ana")
    at.text_input[1].input("ana-password")
    at.button[0].click().run()
    at.switch_page("views/finetune.py").run()
    assert at.text_input[3].value == str(tmp_path / "gone.parquet")  # the app's --embeddings is the default
    _button(at, "Pick cases to label next").click().run()
    assert not at.exception, at.exception
    errors = _page_errors(at)
    assert len(errors) == 1 and errors[0].startswith(f"Cannot pick cases: embeddings file {tmp_path / 'gone.parquet'} "
                                                     "does not exist; give the file"), errors
    # the real embeddings file of these scores: ten picks, none of them decided
    at.text_input[3].input(str(tmp_path / "data" / "embeddings.parquet")).run()
    _button(at, "Pick cases to label next").click().run()
    assert not at.exception and not _page_errors(at), _page_errors(at)
    picks = next(d for d in at.dataframe if "uncertainty" in d.value.columns).value
    assert len(picks) == 10 and picks["case_id"].is_unique
