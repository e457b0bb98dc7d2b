""""Why flagged": ``medssl score`` names what makes a planted anomaly unusual, in every domain.

Each fixture plants a known anomaly in a few cases of the bundled sample data (a transaction
column, an ICU variable, a time window of ECG beats, an image region), runs the real CLI loop
(ingest -> pretrain a few steps -> score) and reads the score file's ``explanation`` column.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medssl.cli import main
from medssl.data import read_manifest

SAMPLES = Path(__file__).resolve().parents[1] / "datasets"
N_PLANTED = 4


@dataclass(frozen=True)
class Planted:
    scores: pd.DataFrame  # the score file
    planted: list[str]  # case ids with the planted anomaly
    data_dir: Path
    model: Path


def _cli(*argv: object) -> None:
    assert main(["-q", *map(str, argv)]) == 0, argv


def _pretrain_and_score(data_dir: Path, *pretrain: object, flag_top: int = 12) -> pd.DataFrame:
    run, scores = data_dir.parent / "run", data_dir.parent / "scores.parquet"
    _cli("pretrain", "--data", data_dir, "--out", run, "--max-steps", 3, "--accelerator", "cpu", "--seed", 0, *pretrain)
    _cli("score", "--model", run / "checkpoint.pt", "--data", data_dir, "--out", scores, "--flag-top", flag_top,
         "--device", "cpu")
    return pd.read_parquet(scores)


def _first_unit(explanation: str) -> str:
    """The unit an explanation names first: "Most unusual: <unit> (percentile ..."."""
    found = re.match(r"Most unusual: (.+?) \(percentile ", explanation)
    assert found, explanation
    return found.group(1)


@pytest.fixture(scope="module")
def transactions(tmp_path_factory) -> Planted:
    root = tmp_path_factory.mktemp("tx")
    rows = pd.read_csv(SAMPLES / "transactions" / "ulb_creditcard_sample.csv")
    planted = rows.index[rows["Class"] == 0][100:100 + N_PLANTED]
    rows.loc[planted, "V14"] = -40.0  # far below any real V14 (the fraud signature, alone)
    rows.to_csv(root / "tx.csv", index=False)
    _cli("ingest", "transactions", root / "tx.csv", "--id-col", "transaction_id", "--out", root / "data")
    scores = _pretrain_and_score(root / "data", "--batch-size", 64, flag_top=80)
    return Planted(scores, rows.loc[planted, "transaction_id"].astype(str).tolist(), root / "data",
                   root / "run" / "checkpoint.pt")


@pytest.fixture(scope="module")
def ehr(tmp_path_factory) -> Planted:
    root = tmp_path_factory.mktemp("ehr")
    src = root / "set-a"
    shutil.copytree(SAMPLES / "ehr" / "physionet2012_sample" / "set-a", src)
    planted = []
    for path in sorted(src.glob("*.txt"))[:N_PLANTED]:
        raw = pd.read_csv(path, dtype=str)
        hr = raw["Parameter"] == "HR"
        assert hr.sum() > 10, path
        raw.loc[hr, "Value"] = "235"  # a heart rate of 235/min all stay long
        raw.to_csv(path, index=False)
        planted.append(path.stem)
    _cli("ingest", "ehr", src, "--format", "physionet2012", "--out", root / "data")
    scores = _pretrain_and_score(root / "data", "--batch-size", 16)
    manifest = read_manifest(root / "data")
    ids = manifest.loc[manifest["patient_id"].astype(str).isin(planted), "case_id"].astype(str).tolist()
    assert len(ids) == N_PLANTED
    return Planted(scores, ids, root / "data", root / "run" / "checkpoint.pt")


@pytest.fixture(scope="module")
def signals(tmp_path_factory) -> Planted:
    root = tmp_path_factory.mktemp("signals")
    _cli("ingest", "signals", SAMPLES / "signals" / "mitdb_sample", "--format", "wfdb", "--out", root / "data")
    manifest = read_manifest(root / "data")
    (windows_file,) = (root / "data" / "signals").glob("windows*.npy")
    windows = np.load(windows_file, mmap_mode="r+")
    rows = manifest["row"].to_numpy()[600:600 + N_PLANTED]
    length = windows.shape[-1]
    spread = float(np.std(windows[:, 0]))
    windows[rows, 0, : length // 10] += 40 * spread  # a step artefact in the first tenth of lead 0
    windows.flush()
    del windows
    scores = _pretrain_and_score(root / "data", "--batch-size", 64, flag_top=40)
    return Planted(scores, manifest["case_id"].astype(str).iloc[600:600 + N_PLANTED].tolist(), root / "data",
                   root / "run" / "checkpoint.pt")


@pytest.fixture(scope="module")
def imaging(tmp_path_factory) -> Planted:
    """The 4 val X-rays the model finds most normal, each given a black square filling the top left
    cell of a 4 x 4 grid, scored by the same model (the train split, its reference, is unchanged)."""
    root = tmp_path_factory.mktemp("imaging")
    _cli("ingest", "images", SAMPLES / "imaging" / "pneumoniamnist_sample.npz", "--format", "npz", "--out", root / "data")
    before = _pretrain_and_score(root / "data", "--method", "simclr", "--encoder", "small_cnn", "--batch-size", 64)
    val = before[before["case_id"].str.startswith("val:")].sort_values("anomaly_percentile", kind="stable")
    most_normal = val["case_id"].iloc[:N_PLANTED].tolist()
    with np.load(SAMPLES / "imaging" / "pneumoniamnist_sample.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["val_images"][[int(c.split(":")[1]) for c in most_normal], :7, :7] = 0
    np.savez(root / "xray.npz", **arrays)
    _cli("ingest", "images", root / "xray.npz", "--format", "npz", "--out", root / "planted")
    assert read_manifest(root / "planted").set_index("case_id").loc[most_normal, "array_index"].tolist() == [
        int(c.split(":")[1]) for c in most_normal]  # case "val:i" is val_images[i]
    _cli("score", "--model", root / "run" / "checkpoint.pt", "--data", root / "planted", "--out", root / "planted.parquet",
         "--flag-percentile", 50, "--device", "cpu")  # the square lifts them from the bottom to the top half
    after = pd.read_parquet(root / "planted.parquet")
    rise = after.set_index("case_id").loc[most_normal, "anomaly_percentile"] - val.set_index("case_id").loc[most_normal, "anomaly_percentile"]
    assert (rise > 40).all(), rise
    return Planted(after, most_normal, root / "planted", root / "run" / "checkpoint.pt")


def _explanations(p: Planted) -> pd.Series:
    got = p.scores.set_index("case_id").loc[p.planted]
    assert got["flagged"].all(), got[["anomaly_percentile", "flagged"]]
    return got["explanation"]


def test_a_planted_transaction_column_is_named_first(transactions: Planted) -> None:
    for text in _explanations(transactions):
        assert _first_unit(text) == "V14", text
        assert re.search(r"Nearest unflagged case: \S+\.$", text), text


def test_a_planted_icu_variable_is_named_first(ehr: Planted) -> None:
    for text in _explanations(ehr):
        assert _first_unit(text) == "HR (Heart rate)", text


def test_a_planted_ecg_window_is_named_first(signals: Planted) -> None:
    for text in _explanations(signals):
        first = re.fullmatch(r"samples (\d+)-(\d+) of (\d+) \(-250 to -\d+ ms from the beat\)", _first_unit(text))
        assert first and int(first.group(1)) == 0, text  # the window holding the planted step (beat at 0.25 s)


def test_a_planted_image_region_is_named_first(imaging: Planted) -> None:
    for text in _explanations(imaging):
        assert _first_unit(text).startswith("top left region (rows 0-"), text


@pytest.mark.parametrize("fixture", ["transactions", "ehr", "signals", "imaging"])
def test_every_flagged_case_and_no_other_has_an_explanation(fixture: str, request) -> None:
    scores = request.getfixturevalue(fixture).scores
    assert scores.loc[scores["flagged"], "explanation"].str.len().gt(20).all()
    assert scores.loc[~scores["flagged"], "explanation"].isna().all()


# ---- the review store and the case page ------------------------------------------------------

APP = str(Path(__file__).resolve().parents[1] / "apps" / "Home.py")


def _scores_file(p: Planted, path: Path, drop_explanation: bool = False) -> Path:
    (p.scores.drop(columns=["explanation"]) if drop_explanation else p.scores).to_parquet(path)
    return path


def _case_page(p: Planted, case_id: str, url: str, tmp_path: Path, monkeypatch):
    """The case page of ``case_id`` (AppTest), seen by a clinician, with ``p``'s scores imported into ``url``."""
    from streamlit.testing.v1 import AppTest

    from medssl.review import add_user, import_scores, make_engine

    engine = make_engine(url)
    add_user(engine, "dr_lee", "clinician", "lee-password")
    import_scores(engine, _scores_file(p, tmp_path / "scores.parquet"), p.data_dir)
    monkeypatch.setenv("MEDSSL_DB", url)
    monkeypatch.delenv("MEDSSL_EMBEDDINGS", raising=False)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input[0].input("dr_lee")
    at.text_input[1].input("lee-password")
    at.button[0].click().run()
    at.session_state["case_id"] = case_id
    at.switch_page("views/case.py").run()
    assert not at.exception, at.exception
    return at


def test_the_case_page_says_why_a_case_was_flagged(transactions: Planted, new_review_db, tmp_path: Path,
                                                    monkeypatch) -> None:
    from app_text import shown

    case_id = transactions.planted[0]
    at = _case_page(transactions, case_id, new_review_db("review"), tmp_path, monkeypatch)
    texts = [shown(m.value) for m in at.markdown]
    expected = transactions.scores.set_index("case_id").loc[case_id, "explanation"]
    assert "Why flagged" in texts and expected in texts, texts


def test_a_score_file_without_explanations_imports_and_a_rescore_adds_them(transactions: Planted, new_review_db,
                                                                           tmp_path: Path) -> None:
    from medssl.review import get_case, import_scores, make_engine

    engine = make_engine(new_review_db("review"))
    case_id = transactions.planted[0]
    import_scores(engine, _scores_file(transactions, tmp_path / "old.parquet", drop_explanation=True))
    assert get_case(engine, case_id)["explanation"] is None
    import_scores(engine, _scores_file(transactions, tmp_path / "new.parquet"))
    assert get_case(engine, case_id)["explanation"].startswith("Most unusual: V14 (")


def test_a_store_from_before_explanations_gains_the_column_and_keeps_its_cases(transactions: Planted,
                                                                               tmp_path: Path) -> None:
    import sqlite3

    from medssl.review import count_cases, get_case, import_scores, make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    import_scores(make_engine(url), _scores_file(transactions, tmp_path / "old.parquet", drop_explanation=True))
    with sqlite3.connect(tmp_path / "old.db") as conn:  # the cases table as medssl wrote it before
        conn.execute("ALTER TABLE cases DROP COLUMN explanation")
    engine = make_engine(url)
    assert count_cases(engine) == len(transactions.scores)
    import_scores(engine, _scores_file(transactions, tmp_path / "new.parquet"))
    assert get_case(engine, transactions.planted[0])["explanation"].startswith("Most unusual: V14 (")


def test_no_explain_leaves_the_column_empty(transactions: Planted, tmp_path: Path) -> None:
    _cli("score", "--model", transactions.model, "--data", transactions.data_dir, "--out", tmp_path / "s.parquet",
         "--flag-top", 80, "--device", "cpu", "--no-explain")
    scores = pd.read_parquet(tmp_path / "s.parquet")
    assert scores["flagged"].sum() == 80 and scores["explanation"].isna().all()


def test_the_case_page_outlines_the_image_region_named_first(imaging: Planted, tmp_path: Path, monkeypatch) -> None:
    import json

    at = _case_page(imaging, imaging.planted[0], f"sqlite:///{tmp_path / 'review.db'}", tmp_path, monkeypatch)
    (chart,) = at.get("plotly_chart")
    (shape,) = json.loads(chart.proto.spec)["layout"]["shapes"]
    assert (shape["x0"], shape["x1"], shape["y0"], shape["y1"]) == (-0.5, 6.5, -0.5, 6.5)  # pixels 0-6 of 28


@pytest.mark.slow
def test_a_run_killed_while_explaining_resumes_without_explaining_a_chunk_twice(signals: Planted, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "medssl", "score", "--model", str(signals.model), "--data", str(signals.data_dir),
            "--flag-top", "150", "--chunk-size", "100", "--device", "cpu"]
    _cli(*argv[3:], "--out", tmp_path / "clean.parquet")
    out = tmp_path / "killed.parquet"
    parts = tmp_path / "killed.parquet.parts"
    job = subprocess.Popen([*argv, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while job.poll() is None and not list(parts.glob("explain-*.parquet")):
        time.sleep(0.02)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert not out.exists(), "the job finished before it could be killed while explaining"
    explained_before = len(list(parts.glob("explain-*.parquet")))
    resumed = subprocess.run([*argv, "--out", str(out), "--resume"], capture_output=True, text=True, check=True)
    clean, again = pd.read_parquet(tmp_path / "clean.parquet"), pd.read_parquet(out)
    assert again["explanation"].tolist() == clean["explanation"].tolist()
    n_flagged = int(clean["flagged"].sum())
    told = re.search(r"explaining (\d+) flagged cases", resumed.stderr)
    assert told and int(told.group(1)) < n_flagged, (explained_before, resumed.stderr[-2000:])
