"""RR side features and the signals few-label recipe rr_hybrid (issue 15): exact RR values, the
record-grouped CV choice among embedding / rr / embedding+rr, and the product path on real MIT-BIH
beats (ingest -> pretrain -> finetune --label-fraction with the per-case default -> evaluate/score)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.data.signals.rr_features import RR_COLUMNS, rr_features
from medssl.domains import default_label_unit, default_recipes
from medssl.domains.hybrid import _folds
from medssl.domains.signals import fit_rr_hybrid, rr_hybrid_features, side_width


def test_rr_features_exact_values() -> None:
    fs = 100.0
    beats = np.array([0, 100, 180, 300, 400])  # RR 1.0, 0.8, 1.2, 1.0 s; mean 1.0
    got = rr_features(beats[::-1], np.array([0, 180, 400]), fs)  # order of the record's beats does not matter
    assert got.columns.tolist() == list(RR_COLUMNS)
    first, mid, last = got.iloc[0], got.iloc[1], got.iloc[2]
    assert np.isnan(first.rr_prev) and first.rr_next == pytest.approx(1.0) and np.isnan(first.rr_local)
    assert mid.rr_prev == pytest.approx(0.8) and mid.rr_next == pytest.approx(1.2)
    assert mid.rr_local == pytest.approx(0.9) and mid.rr_record == pytest.approx(1.0)
    assert mid.rr_prev_ratio == pytest.approx(0.8) and mid.rr_next_ratio == pytest.approx(1.2)
    assert mid.rr_local_ratio == pytest.approx(0.9) and mid.rr_prev_next == pytest.approx(0.8 / 1.2)
    assert last.rr_prev == pytest.approx(1.0) and np.isnan(last.rr_next) and np.isnan(last.rr_prev_next)
    assert last.rr_local == pytest.approx(1.0)  # mean of all 4 earlier intervals (fewer than 10)
    assert rr_features(np.array([5]), np.array([5]), fs).isna().all().all()  # one beat: nothing defined


def _synthetic(seed: int, informative: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """12 records x 30 beats, 3 classes; the class shows in the ``informative`` block only."""
    rng = np.random.default_rng(seed)
    n, d, k = 360, 16, 4
    y = rng.integers(0, 3, n)
    groups = np.repeat([f"r{i}" for i in range(12)], 30)
    emb = rng.normal(size=(n, d))
    side = rng.normal(size=(n, k))
    if informative == "rr":
        side[:, 0] += 3.0 * (y == 1) - 3.0 * (y == 2)
    else:
        emb[:, :3] += 3.0 * np.eye(3)[y]
    x = torch.zeros(n, 2 + k, 8)
    x[:, 2:] = torch.as_tensor(side, dtype=torch.float32)[:, :, None]
    feats = rr_hybrid_features(x, torch.as_tensor(emb), np.zeros(n), {"side_features": list(RR_COLUMNS[:k])})
    return feats, y, groups


@pytest.mark.parametrize("informative", ["rr", "embedding"])
def test_rr_hybrid_chooses_by_grouped_cv_and_is_one_linear_head(informative: str) -> None:
    feats, y, groups = _synthetic(0, informative)
    assert feats.shape == (360, 16 + 2 * 4) and side_width(feats) == 4
    head = fit_rr_hybrid(feats, y, groups, 3, seed=0)
    sel = head.selection
    assert set(sel["candidates"]) == {f"{b} C={c}" for b in ("embedding", "rr", "embedding+rr") for c in ("0.01", "0.1", "1")}
    assert sel["folds"] == 4 and "grouped by patient" in sel["metric"]
    block = sel["chosen"].split(" ")[0]
    assert (informative in block.split("+")) and sel["candidates"][sel["chosen"]] == max(sel["candidates"].values())
    w = head.weight.detach().numpy()
    if block == "rr":  # a candidate's left-out columns weigh nothing in the one nn.Linear
        assert np.abs(w[:, :16]).max() == 0
    if block == "embedding":
        assert np.abs(w[:, 16:]).max() == 0
    # the head alone (what a model file applies) predicts new cases of the same kind
    test, y_test, _ = _synthetic(1, informative)
    with torch.no_grad():
        pred = head(torch.as_tensor(test, dtype=torch.float32)).argmax(1).numpy()
    assert (pred == y_test).mean() > 0.8


def test_cv_folds_never_split_a_record() -> None:
    _, y, groups = _synthetic(0, "rr")
    folds = _folds(y, groups, seed=0)
    assert len(folds) == 4
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])
    assert _folds(y, np.full(len(y), "r0"), seed=0) == []  # one record: no CV (fallback: embedding C=1)
    head = fit_rr_hybrid(*_synthetic(0, "rr")[:2], np.full(360, "r0"), 3, seed=0)
    assert head.selection["chosen"] == "embedding C=1" and head.selection["candidates"] == {}


def test_signals_defaults() -> None:
    assert default_recipes("signals") == ("embedding_knn", "rr_hybrid")
    assert default_label_unit("signals") == "case" and default_label_unit("imaging") == "patient"


RECORDS = ("106", "119", "209", "220", "223")  # V-rich 106/119/223, S-rich 209/220/223
SECONDS = 600

TINY = """\
method: simclr
encoder: ts2vec_tcn
encoder_options: {hidden: 8, num_features: 16, depth: 2}
batch_size: 64
epochs: 1
limit_cases: 1000
seed: 0
"""


@pytest.fixture(scope="module")
def beats(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first 10 minutes of five DS1 records, ingested (record 223 held out as test), and a
    2-step pretrained checkpoint."""
    from medssl.cli import main
    from wfdb_cut import cut_record

    root = tmp_path_factory.mktemp("rr")
    src = root / "mitdb"
    src.mkdir()
    for name in RECORDS:
        cut_record(shared_data / "signals" / "mitdb_ds1" / name, SECONDS, src)
    data = root / "data"
    assert main(["-q", "ingest", "signals", str(src), "--format", "wfdb", "--out", str(data),
                 "--val-fraction", "0", "--test-fraction", "0.2", "--seed", "0"]) == 0
    (root / "tiny.yaml").write_text(TINY)
    assert main(["-q", "pretrain", "--data", str(data), "--out", str(root / "pre"), "--config", str(root / "tiny.yaml"),
                 "--max-steps", "2"]) == 0 or (root / "pre" / "checkpoint.pt").is_file()
    return data, root / "pre" / "checkpoint.pt"


@pytest.mark.slow  # ingest + a 2-step pretrain + two fine-tunes + evaluate: about a minute idle, more when loaded
def test_finetune_default_is_per_case_rr_hybrid_and_reports_its_choice(beats: tuple[Path, Path], tmp_path: Path) -> None:
    import medssl
    from medssl.cli import main

    data, ckpt = beats
    m = pd.read_parquet(data / "manifest.parquet")
    train = m[m.split == "train"]
    assert train.patient_id.nunique() == 4
    out = tmp_path / "ft"
    assert main(["-q", "finetune", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out),
                 "--label-fraction", "0.05", "--seed", "1"]) == 0
    fit = json.loads((out / "metrics.json").read_text())
    assert fit["label_unit"] == "case" and fit["mode"] == "recipe" and fit["recipes"]["few_label"] == "rr_hybrid"
    assert fit["n_labelled"] == round(0.05 * train.label.notna().sum())
    sel = fit["selection"]
    assert sel["chosen"] in sel["candidates"] and len(sel["candidates"]) == 9 and sel["folds"] >= 2
    model = medssl.load_model(out / "model.pt")
    assert model.meta["selection"] == sel and model.meta["head_input"] == "rr_hybrid"
    assert model.meta["preprocessing"]["side_features"] == list(RR_COLUMNS)
    # the head reads [embedding | RR | RR^2] of the model's own items, at score/evaluate time as at fit time
    proba = model.predict_proba(data)
    assert proba.shape == (len(m), len(model.classes)) and np.allclose(proba.sum(1), 1)
    assert model.head.in_features == model.encoder.num_features + 2 * len(RR_COLUMNS)
    report = medssl.evaluate(out / "model.pt", data, tmp_path / "report.json")
    assert report["n"] == int((m.split == "test").sum() - (~m.loc[m.split == "test", "label"].isin(model.classes)).sum())
    # --label-unit patient: the same 5% would have to be whole records, which no set of these records makes
    assert main(["-q", "finetune", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "whole"),
                 "--label-fraction", "0.05", "--label-unit", "patient", "--seed", "1"]) == 2
