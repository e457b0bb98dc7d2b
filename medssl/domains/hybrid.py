"""A hybrid few-label head: a logistic regression on ``[embedding | side features]`` whose column
blocks and strength are chosen by patient-grouped cross-validation on the labelled cases only.

``fit_block_logreg(features, y, groups, n_classes, seed, blocks)`` tries every candidate (a named
set of column blocks, e.g. ``embedding``, ``side``, ``embedding+side``) with every strength
``C`` in ``LOGREG_CS``: standardised columns, class-balanced weights, out-of-fold predictions over
``StratifiedGroupKFold`` folds of the patients (one patient is never in a fold's training and
validation part both); the score is the macro-F1 of the pooled out-of-fold predictions. The best
candidate is refitted on all labelled cases and folded into one ``nn.Linear`` over all columns
(the columns a candidate leaves out get weight 0), so a model file applies it as any linear head.
The head carries ``head.selection`` (``{"metric", "folds", "candidates": {name: score}, "chosen"}``),
which ``medssl finetune`` writes into metrics.json and the model meta.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from torch import nn

from medssl.domains.recipe import linear_head

log = logging.getLogger(__name__)

LOGREG_CS = (0.01, 0.1, 1.0)
MAX_FOLDS = 4
MAX_ITER = 500


def _logreg(c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=MAX_ITER, random_state=seed)


def _folds(y: np.ndarray, groups: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-grouped folds (at most ``MAX_FOLDS``, at least 2 patients); ``[]`` when impossible."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    k = min(MAX_FOLDS, n_groups)
    if k < 2:
        return []
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "the least populated class has fewer members than n_splits"
        warnings.simplefilter("ignore")
        return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y, groups) if len(np.unique(y[tr])) >= 2]


def _cv_macro_f1(z: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], c: float, seed: int,
                 n_classes: int) -> float:
    """Macro-F1 (over the labelled classes) of pooled out-of-fold predictions."""
    from sklearn.metrics import f1_score

    pred = np.full(len(y), -1)
    for tr, va in folds:
        with warnings.catch_warnings():  # a fold without some rare class: expected with few labels
            warnings.simplefilter("ignore")
            clf = _logreg(c, seed).fit(z[tr], y[tr])
        pred[va] = clf.classes_[clf.predict_proba(z[va]).argmax(axis=1)]
    seen = pred >= 0
    return float(f1_score(y[seen], pred[seen], labels=np.unique(y), average="macro", zero_division=0))


def fit_block_logreg(features: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, seed: int,
                     blocks: dict[str, np.ndarray]) -> nn.Linear:
    """The best candidate's logistic regression as ``nn.Linear(P, n_classes)`` (see the module doc).

    ``features`` ``(N, P)``, ``y`` ``(N,)`` class ids in ``[0, n_classes)``, ``groups`` ``(N,)``
    patient ids; ``blocks``: candidate name -> bool column mask ``(P,)`` (the first is the fallback
    when no cross-validation is possible: fewer than 2 patients or a class in one patient only).
    """
    from sklearn.preprocessing import StandardScaler

    features = np.nan_to_num(np.asarray(features, dtype=np.float64))
    scaler = StandardScaler().fit(features)
    z = scaler.transform(features)
    folds = _folds(y, np.asarray(groups).astype(str), seed)
    scores: dict[str, float] = {}
    best: tuple[float, str, float] | None = None
    names = [n for n, m in blocks.items() if np.asarray(m).any()]
    for name in names:
        mask = np.asarray(blocks[name], dtype=bool)
        for c in LOGREG_CS:
            if not folds:
                break
            score = _cv_macro_f1(z[:, mask], y, folds, c, seed, n_classes)
            scores[f"{name} C={c:g}"] = round(score, 4)
            if best is None or score > best[0] + 1e-9:
                best = (score, name, c)
    chosen_name, chosen_c = (best[1], best[2]) if best else (names[0], 1.0)
    mask = np.asarray(blocks[chosen_name], dtype=bool)
    clf = _logreg(chosen_c, seed).fit(z[:, mask], y)
    coef = np.zeros((clf.coef_.shape[0], features.shape[1]))
    coef[:, mask] = clf.coef_
    if clf.coef_.shape[0] == len(clf.classes_) and len(clf.classes_) < n_classes:  # a class absent from y
        full = np.full((n_classes, features.shape[1]), 0.0)
        bias_full = np.full(n_classes, -1e4)
        full[clf.classes_] = coef
        bias_full[clf.classes_] = clf.intercept_
        coef, intercept = full, bias_full
    else:
        intercept = clf.intercept_
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    coef = coef / scale
    bias = intercept - coef @ scaler.mean_
    head = linear_head(coef, bias, n_classes)
    head.selection = {  # type: ignore[assignment]  (plain attribute: not part of the state dict)
        "metric": f"macro-F1 of out-of-fold predictions, {len(folds)}-fold cross-validation grouped by patient "
                  "on the labelled cases only",
        "folds": len(folds),
        "candidates": scores,
        "chosen": f"{chosen_name} C={chosen_c:g}",
    }
    log.info("hybrid head: chose %s C=%g among %s", chosen_name, chosen_c, scores)
    return head
