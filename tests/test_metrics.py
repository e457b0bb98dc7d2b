"""Metrics equal scikit-learn's on fixed arrays; the patient bootstrap CI behaves; reports are written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    roc_auc_score,
)

from medssl.metrics import classification_metrics, patient_bootstrap_ci, point_metrics
from medssl.eval.report import build_report, write_json, write_plots

Y_BIN = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0])
P1 = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.55, 0.6, 0.7, 0.3])
P_BIN = np.stack([1 - P1, P1], axis=1)


def test_binary_metrics_equal_sklearn() -> None:
    m = classification_metrics(Y_BIN, P_BIN, ["neg", "pos"])
    pred = (P1 > 0.5).astype(int)
    assert m["auroc"] == pytest.approx(roc_auc_score(Y_BIN, P1))
    assert m["auroc"] == pytest.approx(0.88)  # 22 of 25 positive/negative pairs ordered right
    assert m["auprc"] == pytest.approx(average_precision_score(Y_BIN, P1))
    assert m["accuracy"] == pytest.approx(accuracy_score(Y_BIN, pred)) == 0.8
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y_BIN, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(Y_BIN, pred, average="macro"))
    assert m["per_class"]["pos"] == {"precision": 0.8, "recall": 0.8, "f1": pytest.approx(0.8), "support": 5}


def test_multiclass_auroc_is_ovr_macro() -> None:
    rng = np.random.default_rng(3)
    y = np.tile([0, 1, 2], 10)
    p = rng.dirichlet([1, 1, 1], size=30)
    p[np.arange(30), y] += 0.3
    p /= p.sum(1, keepdims=True)
    m = point_metrics(y, p)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    onehot = np.eye(3)[y]
    assert m["auprc"] == pytest.approx(average_precision_score(onehot, p, average="macro"))
    assert m["macro_f1"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))


def test_single_class_auroc_is_undefined() -> None:
    m = point_metrics(np.ones(4, dtype=int), np.tile([0.3, 0.7], (4, 1)))
    assert m["auroc"] is None and m["auprc"] is None and m["accuracy"] == 1.0


def test_bootstrap_ci_contains_point_and_resamples_patients() -> None:
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 2, n)
    score = np.clip(0.5 * y + rng.normal(0.25, 0.25, n), 0, 1)
    proba = np.stack([1 - score, score], 1)
    groups = np.arange(n) // 2  # 100 patients, 2 cases each
    point = point_metrics(y, proba)
    ci = patient_bootstrap_ci(y, proba, groups, n_boot=300, seed=1)
    for name, (lo, hi) in ci.items():
        assert lo <= point[name] <= hi, name
        assert hi - lo > 0.01, name  # real sampling variability, not a degenerate interval
    # One patient holding every case: every resample is the full set -> a zero-width interval.
    ci_one = patient_bootstrap_ci(y, proba, np.zeros(n), n_boot=20)
    assert ci_one["auroc"] == pytest.approx([point["auroc"]] * 2)
    # Same seed, same answer.
    assert patient_bootstrap_ci(y, proba, groups, n_boot=300, seed=1) == ci


def test_report_json_and_plots(tmp_path) -> None:
    report = build_report(Y_BIN, P_BIN, ["neg", "pos"], patient_ids=np.arange(10), n_boot=50, split="test")
    write_json(report, tmp_path / "r.json")
    back = json.loads((tmp_path / "r.json").read_text())
    assert back["n"] == 10 and back["split"] == "test"
    assert set(back["metrics"]) == {"auroc", "auprc", "accuracy", "balanced_accuracy", "macro_f1", "per_class"}
    assert set(back["ci95"]) == {"auroc", "auprc", "accuracy", "balanced_accuracy", "macro_f1"}
    files = write_plots(Y_BIN, P_BIN, ["neg", "pos"], tmp_path)
    for name in files.values():
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
