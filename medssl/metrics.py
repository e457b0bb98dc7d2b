"""Classification metrics (scikit-learn) and 95% CIs from a patient-level bootstrap.

Inputs everywhere: ``y_true`` (N,) int class ids in ``[0, C)``, ``proba`` (N, C) class
probabilities (rows sum to 1), ``groups`` (N,) patient ids. Binary problems use column 1 of
``proba`` as the positive-class score; with more than two classes AUROC is the one-vs-rest
macro average and AUPRC the macro average precision over one-vs-rest problems.

A metric that is undefined on the given rows (AUROC with a single class present) is ``None``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.preprocessing import label_binarize

log = logging.getLogger(__name__)

SUMMARY_METRICS: tuple[str, ...] = ("auroc", "auprc", "accuracy", "balanced_accuracy", "macro_f1")


def _check(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0] or p.shape[1] < 2:
        raise ValueError(f"proba must be (N, C>=2) matching y_true (N,); got {p.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"y_true holds class ids outside [0, {p.shape[1]})")
    return y, p


def auroc(y_true: np.ndarray, proba: np.ndarray) -> float | None:
    """ROC AUC (binary: positive = class 1; multiclass: one-vs-rest macro). None if undefined."""
    y, p = _check(y_true, proba)
    present = np.unique(y)
    if present.size < 2:
        return None
    if p.shape[1] == 2:
        return float(roc_auc_score(y, p[:, 1]))
    if present.size < p.shape[1]:
        # sklearn's ovr needs every class present; average over the classes that are
        aucs = [roc_auc_score(y == c, p[:, c]) for c in present]
        return float(np.mean(aucs))
    return float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(p.shape[1]))))


def auprc(y_true: np.ndarray, proba: np.ndarray) -> float | None:
    """Average precision (binary: positive = class 1; multiclass: macro over classes present)."""
    y, p = _check(y_true, proba)
    if np.unique(y).size < 2:
        return None
    if p.shape[1] == 2:
        return float(average_precision_score(y, p[:, 1]))
    onehot = label_binarize(y, classes=list(range(p.shape[1])))
    present = onehot.sum(axis=0) > 0
    return float(average_precision_score(onehot[:, present], p[:, present], average="macro"))


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float | None:
    """Mean recall over the classes present in ``y`` (sklearn's, without its one-class warning)."""
    if not y.size:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        return float(balanced_accuracy_score(y, pred))


def point_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    """The five summary metrics; predictions are ``argmax(proba)``."""
    y, p = _check(y_true, proba)
    pred = p.argmax(axis=1)
    labels = list(range(p.shape[1]))
    return {
        "auroc": auroc(y, p),
        "auprc": auprc(y, p),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": _balanced_accuracy(y, pred),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
    }


def per_class_metrics(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{class: {"precision", "recall", "f1", "support"}}`` for predictions ``argmax(proba)``."""
    y, p = _check(y_true, proba)
    if len(classes) != p.shape[1]:
        raise ValueError(f"{len(classes)} class names for {p.shape[1]} probability columns")
    prec, rec, f1, support = precision_recall_fscore_support(
        y, p.argmax(axis=1), labels=list(range(p.shape[1])), zero_division=0
    )
    return {
        str(name): {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(classes)
    }


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Summary metrics plus ``"per_class"``: the ``metrics`` block of an evaluate report."""
    return {**point_metrics(y_true, proba), "per_class": per_class_metrics(y_true, proba, classes)}


def patient_bootstrap_ci(
    y_true: np.ndarray,
    proba: np.ndarray,
    groups: Sequence[Any],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap CI for each summary metric, resampling *patients* with replacement.

    Every case of a drawn patient enters the resample (as often as the patient is drawn), so
    correlated cases of one patient never look like independent evidence. Resamples in which a
    metric is undefined (one class only) are skipped for that metric; a metric defined in fewer
    than half of the resamples gets ``None``. Returns ``{metric: [lo, hi]}``.
    """
    y, p = _check(y_true, proba)
    g = np.asarray([str(x) for x in groups])
    if g.shape[0] != y.shape[0]:
        raise ValueError(f"groups has {g.shape[0]} entries for {y.shape[0]} cases")
    _, codes = np.unique(g, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    members = [order[s : s + c] for s, c in zip(starts, counts)]
    n_pat = len(members)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in SUMMARY_METRICS}
    for _ in range(n_boot):
        picked = rng.integers(0, n_pat, size=n_pat)
        idx = np.concatenate([members[i] for i in picked])
        for name, value in point_metrics(y[idx], p[idx]).items():
            if value is not None and not math.isnan(value):
                draws[name].append(value)
    alpha = (1.0 - level) / 2.0
    out: dict[str, list[float] | None] = {}
    for name, values in draws.items():
        if len(values) < max(1, n_boot // 2):
            out[name] = None
            continue
        lo, hi = np.quantile(np.asarray(values), [alpha, 1.0 - alpha])
        out[name] = [float(lo), float(hi)]
    if n_pat < 20:
        log.warning("bootstrap over only %d patients: the confidence intervals are rough", n_pat)
    return out
