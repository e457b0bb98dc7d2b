"""Linear probes on frozen embeddings: class-balanced logistic regression, optionally on labels
spread to the unlabelled train cases (label spreading)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from medssl.domains import linear_head
from medssl.models import embed
from medssl.train.finetune_config import FinetuneConfig
from medssl.train.finetune_data import FinetuneData
from medssl.train.label_spreading import spread_labels

log = logging.getLogger(__name__)


def linear_probe(emb: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, seed: int) -> nn.Linear:
    """Class-balanced logistic regression on standardised embeddings ``(N, F)`` as an ``nn.Linear``.

    The inverse-frequency regularisation C is chosen by patient-grouped stratified CV when every
    class has at least 3 cases. The standardisation is folded into the layer, so the head reads
    raw embeddings; a binary model gets logits ``(-z/2, z/2)`` so that softmax gives ``sigmoid(z)``.
    """
    scaler = StandardScaler().fit(emb)
    x = scaler.transform(emb)
    min_count = int(np.bincount(y, minlength=n_classes).min())
    n_groups = len(np.unique(groups))
    if min_count >= 3 and n_groups >= 3:
        folds = list(StratifiedGroupKFold(n_splits=min(5, min_count, n_groups), shuffle=True, random_state=seed).split(x, y, groups))
        clf = LogisticRegressionCV(
            Cs=[0.001, 0.01, 0.1, 1.0, 10.0], cv=folds, class_weight="balanced", max_iter=3000, scoring="neg_log_loss",
            l1_ratios=(0.0,), use_legacy_attributes=False,
        )
    else:
        clf = LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000)
    with threadpool_limits(limits=1, user_api="blas"):  # many small solver steps: 2+ BLAS threads only contend
        clf.fit(x, y)
    coef = clf.coef_ / scaler.scale_  # (1 or C, F) on raw embeddings
    return linear_head(coef, clf.intercept_ - coef @ scaler.mean_, n_classes)


def _spread_probe(
    data: FinetuneData,
    train_rows: np.ndarray,
    y_train: np.ndarray,
    n_classes: int,
    val_rows: np.ndarray,
    emb_train: torch.Tensor,
    encoder: nn.Module,
    frozen_embeddings: torch.Tensor | None,
    config: FinetuneConfig,
) -> tuple[nn.Linear, dict[str, Any]]:
    """Linear probe on the labelled rows plus every other train-pool row, labelled by spreading.

    The unlabelled rows are the train pool (train split, or every row without one) minus the
    labelled and validation rows: evaluation cases never enter the graph.
    """
    unl = np.setdiff1d(np.flatnonzero(data.train_pool()), np.concatenate([train_rows, val_rows]))
    if len(unl) == 0:
        log.warning("unlabelled: spread found no unlabelled train cases; fitting the probe on the labelled cases only")
        return linear_probe(emb_train.numpy(), y_train, data.patient_ids[train_rows], n_classes, config.seed), {"n_unlabelled": 0}
    emb_unl = (
        frozen_embeddings[torch.as_tensor(unl, dtype=torch.long)]
        if frozen_embeddings is not None
        else embed(encoder, data.dataset, unl, device=next(encoder.parameters()).device, desc="embedding unlabelled cases")
    )
    proba = spread_labels(emb_train.numpy(), y_train, emb_unl.numpy(), n_classes, config.spread_k, config.spread_alpha,
                          config.spread_class_mass)
    pseudo = proba.argmax(axis=1)
    counts = np.bincount(pseudo, minlength=n_classes).tolist()
    log.info("label spreading: %d labelled -> %d unlabelled train cases (spread class counts %s)",
             len(train_rows), len(unl), counts)
    x = np.concatenate([emb_train.numpy(), emb_unl.numpy()])
    y = np.concatenate([y_train, pseudo])
    groups = np.concatenate([data.patient_ids[train_rows], data.patient_ids[unl]])
    head = linear_probe(x, y, groups, n_classes, config.seed)
    return head, {"n_unlabelled": int(len(unl)), "spread_class_counts": counts}
