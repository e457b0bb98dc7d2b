"""The decision threshold of a two-class head, chosen on held-out labelled patients.

A class-weighted head can rank cases well (high AUROC) yet put almost every case in one class
(networks trained from scratch on few labels do, e.g. in ``benchmarks/label_efficiency_pneumonia.py``).
``medssl finetune`` therefore picks, on the labelled patients it held out for early
stopping, the cut-off on P(class 1) that maximises balanced accuracy (Youden's J, from
scikit-learn's ``roc_curve``) and folds it into the head's bias: ``argmax`` of the shifted logits
is exactly ``P(class 1) >= t``. Rankings (AUROC, AUPRC, anomaly scores) do not change; predicted
labels, and the probability of the predicted label, do.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import roc_curve
from torch import nn

EPS = 1e-6  # keeps logit(t) finite


def balanced_threshold(y: np.ndarray, p1: np.ndarray) -> float | None:
    """The cut-off ``t`` on ``p1`` (N,) (predict class 1 when ``p1 >= t``) with the best balanced
    accuracy for labels ``y`` (N,) in {0, 1}; halfway between neighbouring scores so that no
    held-out case sits on it. ``None`` when ``y`` holds a single class."""
    y = np.asarray(y).astype(int)
    p1 = np.asarray(p1, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, thr = roc_curve(y, p1)
    best = int(np.argmax(tpr - fpr))
    if not np.isfinite(thr[best]):  # predicting nobody positive is best: keep the head as it is
        return None
    below = p1[p1 < thr[best]]
    return float((thr[best] + below.max()) / 2) if below.size else float(thr[best]) * (1 - EPS)


def shift_head_to_threshold(head: nn.Linear, t: float) -> None:
    """Shift the bias of a two-class ``head`` so that ``argmax(logits) == 1`` exactly when
    ``softmax(logits)[1] >= t`` of the unshifted head (``p1 = sigmoid(z1 - z0)``)."""
    if head.bias is None or head.out_features != 2:
        raise ValueError("only a two-class head with a bias can carry a decision threshold")
    t = min(max(float(t), EPS), 1 - EPS)
    with torch.no_grad():
        head.bias[1] -= math.log(t / (1 - t))
