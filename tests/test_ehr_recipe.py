"""The EHR few-label recipe ehr_summary_hybrid (issue 15): exact per-variable summaries of a grid
item, the patient-grouped CV choice among summaries / embedding+summaries / embedding, and the
product path on real PhysioNet 2012 stays (ingest -> pretrain -> finetune defaults -> evaluate/score)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.domains import default_recipes
from medssl.domains.ehr import (
    _grouped_folds,
    ehr_summaries,
    fit_summary_hybrid,
    summary_hybrid_features,
    summary_names,
)

PREP = {"variables": ["HR", "Lactate", "Urine"], "static_names": ["Age", "Gender"]}


def _item() -> torch.Tensor:
    """One stay ``(2C, T)`` = (10, 4): HR seen in bins 0, 1, 3; Lactate never; Urine an outlier
    (z = 9) in bin 2; Age known (z = 1.5), Gender unknown."""
    x = torch.zeros(10, 4)
    x[0] = torch.tensor([1.0, -2.0, 0.0, 0.5])  # HR values (bin 2 unobserved: 0)
    x[5] = torch.tensor([1.0, 1.0, 0.0, 1.0])  # HR mask
    x[2, 2], x[7, 2] = 9.0, 1.0  # Urine z = 9, measured once
    x[3], x[8] = 1.5, 1.0  # Age, known
    return x


def test_summaries_exact_values() -> None:
    got = ehr_summaries(_item()[None], PREP)[0]
    names = summary_names(PREP)
    assert len(got) == len(names) == 8 * 3 + 2 * 2
    v = dict(zip(names, got))
    assert (v["HR_last"], v["HR_min"], v["HR_max"]) == (0.5, -2.0, 1.0)
    assert v["HR_mean"] == pytest.approx(-0.5 / 3) and v["HR_mean^2"] == pytest.approx(0.25 / 9)
    assert v["HR_last^2"] == 0.25 and v["HR_count"] == 0.75 and v["HR_missing"] == 0.0
    # never measured: every summary is the train mean (0) and the indicator says so
    assert all(v[f"Lactate_{s}"] == 0.0 for s in ("last", "min", "max", "mean", "count")) and v["Lactate_missing"] == 1.0
    assert v["Urine_max"] == 4.0 and v["Urine_last^2"] == 16.0  # clipped to +-4 standard deviations
    assert (v["Age"], v["Age_missing"], v["Gender"], v["Gender_missing"]) == (1.5, 0.0, 0.0, 1.0)
    feats = summary_hybrid_features(_item()[None], torch.ones(1, 5), np.zeros(1), PREP)
    assert feats.shape == (1, 5 + len(names)) and (feats[0, :5] == 1).all() and np.array_equal(feats[0, 5:], got)


def _synthetic(seed: int, informative: str, n_patients: int = 60,
               positive: float = 0.5, effect: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2 stays per patient, binary outcome (``positive`` share of patients); the outcome shows in
    the ``informative`` block only."""
    rng = np.random.default_rng(seed)
    n, d = 2 * n_patients, 12
    groups = np.repeat([f"p{i}" for i in range(n_patients)], 2)
    y = np.repeat((rng.random(n_patients) < positive).astype(int), 2)
    x = torch.zeros(n, 10, 4)
    x[:, 5:8] = 1.0  # every variable measured in every bin
    x[:, 0:3] = torch.as_tensor(rng.normal(size=(n, 3, 4)), dtype=torch.float32)
    emb = rng.normal(size=(n, d))
    if informative == "summaries":
        x[:, 0] += torch.as_tensor(effect * y, dtype=torch.float32)[:, None]
    else:
        emb[:, 0] += 2.5 * y
    return summary_hybrid_features(x, torch.as_tensor(emb), np.zeros(n), PREP), y, groups


@pytest.mark.parametrize("informative", ["summaries", "embedding"])
def test_hybrid_chooses_by_grouped_cv_auroc_and_is_one_linear_head(informative: str) -> None:
    feats, y, groups = _synthetic(0, informative)
    head = fit_summary_hybrid(feats, y, groups, 2, seed=0, emb_dim=12)
    sel = head.selection
    blocks = ("summaries", "embedding+summaries", "embedding")
    assert set(sel["candidates"]) == {f"{b} C={c:g}" for b in blocks for c in (0.001, 0.003, 0.01, 0.03, 0.1, 1.0)}
    assert sel["folds"] == 5 and "grouped by patient" in sel["metric"] and "AUROC" in sel["metric"]
    assert sel["candidates"][sel["chosen"]] == max(sel["candidates"].values())
    block = sel["chosen"].split(" ")[0]
    assert informative in block.split("+")
    w = head.weight.detach().numpy()
    if block == "summaries":  # a candidate's left-out columns weigh nothing in the one nn.Linear
        assert np.abs(w[:, :12]).max() == 0
    if block == "embedding":
        assert np.abs(w[:, 12:]).max() == 0
    # the head alone (what a model file applies) ranks new stays of the same kind
    from sklearn.metrics import roc_auc_score

    test, y_test, _ = _synthetic(1, informative)
    with torch.no_grad():
        proba = torch.softmax(head(torch.as_tensor(test, dtype=torch.float32)), 1)[:, 1].numpy()
    assert roc_auc_score(y_test, proba) > 0.85


def test_two_class_head_carries_the_balanced_cut_of_its_out_of_fold_predictions() -> None:
    """Mortality-like imbalance (about 12% positive): a strongly regularised logistic regression
    ranks well but its 0.5 cut would call nearly every stay a survivor; the head's bias carries the
    cut-off chosen on the labelled cases' out-of-fold predictions instead."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    feats, y, groups = _synthetic(0, "summaries", n_patients=150, positive=0.12, effect=0.8)
    head = fit_summary_hybrid(feats, y, groups, 2, seed=0, emb_dim=12)
    cut = head.selection["threshold"]
    assert cut is not None and 0 < cut < 0.5
    test, y_test, _ = _synthetic(1, "summaries", n_patients=150, positive=0.12, effect=0.8)
    with torch.no_grad():
        logits = head(torch.as_tensor(test, dtype=torch.float32))
    pred, p1 = logits.argmax(1).numpy(), torch.softmax(logits, 1)[:, 1].numpy()
    assert roc_auc_score(y_test, p1) > 0.75
    # without the cut: balanced accuracy 0.60, 5% of stays called positive (12% are)
    assert balanced_accuracy_score(y_test, pred) > 0.65 and 0.1 < pred.mean() < 0.6


def test_cv_folds_never_split_a_patient_and_fallback_without_cv() -> None:
    feats, y, groups = _synthetic(0, "summaries")
    folds = _grouped_folds(y, groups, seed=0)
    assert len(folds) == 5
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])
    assert sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(len(y)))
    # the rarer class held by one patient only: no CV, the fixed fallback, and the record says so
    one = y.copy()
    one[:] = 0
    one[:2] = 1
    assert _grouped_folds(one, groups, seed=0) == []
    head = fit_summary_hybrid(feats, one, groups, 2, seed=0, emb_dim=12)
    assert head.selection["candidates"] == {} and head.selection["chosen"] == "embedding+summaries C=0.01"
    assert head.selection["folds"] == 0


def test_ehr_defaults() -> None:
    assert default_recipes("ehr") == ("embedding_knn", "ehr_summary_hybrid")


TINY = """\
method: ts2vec
encoder: ts2vec_tcn
encoder_options: {hidden: 8, num_features: 16, depth: 2}
batch_size: 32
epochs: 1
seed: 0
"""


@pytest.mark.slow  # ingest of 120 real stays + a 2-step pretrain + a fine-tune + evaluate + score
def test_finetune_default_is_summary_hybrid_on_real_stays(shared_data: Path, tmp_path: Path) -> None:
    import medssl
    from medssl.cli import main

    src = tmp_path / "set-a"
    src.mkdir()
    for f in sorted((shared_data / "ehr/physionet2012/set-a").glob("*.txt"))[:120]:
        shutil.copy(f, src / f.name)
    data = tmp_path / "data"
    assert main(["-q", "ingest", "ehr", str(src), "--format", "physionet2012", "--outcomes",
                 str(shared_data / "ehr/physionet2012/Outcomes-a.txt"), "--out", str(data),
                 "--val-fraction", "0", "--test-fraction", "0.25", "--seed", "0"]) == 0
    (tmp_path / "tiny.yaml").write_text(TINY)
    assert main(["-q", "pretrain", "--data", str(data), "--out", str(tmp_path / "pre"), "--config",
                 str(tmp_path / "tiny.yaml"), "--max-steps", "2"]) == 0
    out = tmp_path / "ft"
    assert main(["-q", "finetune", "--checkpoint", str(tmp_path / "pre/checkpoint.pt"), "--data", str(data),
                 "--out", str(out)]) == 0
    fit = json.loads((out / "metrics.json").read_text())
    assert fit["mode"] == "recipe" and fit["recipes"]["few_label"] == "ehr_summary_hybrid"
    sel = fit["selection"]
    assert sel["chosen"] in sel["candidates"] and len(sel["candidates"]) == 18 and sel["folds"] >= 2
    model = medssl.load_model(out / "model.pt")
    assert model.meta["selection"] == sel and model.meta["head_input"] == "ehr_summary_hybrid"
    n_summ = len(summary_names(model.preprocessing))
    assert model.head.in_features == model.encoder.num_features + n_summ
    # evaluate and score read the same features from the stored grid rows as the fit did
    m = pd.read_parquet(data / "manifest.parquet")
    proba = model.predict_proba(data)
    assert proba.shape == (len(m), 2) and np.allclose(proba.sum(1), 1)
    item = get_item(data, model.preprocessing, m)
    emb = model.embed(item)
    by_hand = torch.softmax(model.head(torch.as_tensor(summary_hybrid_features(item, torch.as_tensor(emb), np.zeros(len(m)),
                                                                                 model.preprocessing), dtype=torch.float32)), 1)
    assert np.allclose(by_hand.detach().numpy(), proba, atol=1e-5)
    report = medssl.evaluate(out / "model.pt", data, tmp_path / "report.json")
    assert report["n"] == int(((m.split == "test") & m.label.notna()).sum()) and 0 <= report["metrics"]["auroc"] <= 1
    assert main(["-q", "score", "--model", str(out / "model.pt"), "--data", str(data), "--out", str(tmp_path / "s.parquet")]) == 0
    scores = pd.read_parquet(tmp_path / "s.parquet").set_index("case_id").loc[m.case_id]
    top = proba.max(1)
    assert np.allclose(scores["predicted_proba"].to_numpy(), top, atol=1e-5)


def get_item(data: Path, preprocessing: dict, manifest: pd.DataFrame) -> torch.Tensor:
    """Every stay of ``data`` as the EHR dataset gives it ``(N, 2C, T)``."""
    from medssl.data import get_domain

    ds = get_domain("ehr").make_dataset(data, manifest, preprocessing)
    return torch.stack([ds[i] for i in range(len(ds))])
