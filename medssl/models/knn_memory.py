"""Labelled embeddings for a model fine-tuned in ``knn`` mode, and its nearest-centroid head.

Prediction: a distance-weighted vote of the ``k`` nearest labelled embeddings (cosine distance,
scikit-learn ``KNeighborsClassifier``), divided by each class's share of the labelled cases and
renormalised (so a rare class is not out-voted by sheer numbers). The model file's ``head`` stays
a working classifier for tools that only read ``{"encoder", "head"}``: a nearest-centroid rule on
L2-normalised embeddings (logits = 10 x cosine to each class mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

CENTROID_SCALE = 10.0


@dataclass
class KnnMemory:
    """Labelled embeddings ``(M, F)`` and class ids ``(M,)`` for kNN prediction with ``k`` neighbours."""

    embeddings: torch.Tensor
    labels: torch.Tensor
    k: int

    def predict_proba(self, emb: torch.Tensor, n_classes: int) -> np.ndarray:
        """Class probabilities ``(N, n_classes)`` of query embeddings ``emb`` ``(N, F)``."""
        from sklearn.neighbors import KNeighborsClassifier

        ref = self.embeddings.double().numpy()
        y = self.labels.numpy()
        knn = KNeighborsClassifier(n_neighbors=min(self.k, len(y)), weights="distance", metric="cosine")
        knn.fit(ref, y)
        proba = np.zeros((emb.shape[0], n_classes))
        proba[:, knn.classes_] = knn.predict_proba(emb.double().numpy())
        prior = np.bincount(y, minlength=n_classes) / len(y)
        proba = proba / np.where(prior > 0, prior, 1.0)
        total = proba.sum(axis=1, keepdims=True)
        return np.where(total > 0, proba / np.where(total > 0, total, 1.0), 1.0 / n_classes)


def centroid_head(embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int) -> nn.Linear:
    """Nearest-centroid classifier as ``nn.Linear``: weight row c = unit mean of class c's unit embeddings.

    It sees raw embeddings, so it is exact for cosine ranking only up to the query's norm (which
    does not change the argmax or the ranking within a class column scaled by a positive factor).
    """
    unit = nn.functional.normalize(embeddings.float(), dim=1)
    head = nn.Linear(unit.shape[1], n_classes)
    with torch.no_grad():
        for c in range(n_classes):
            mean = unit[labels == c].mean(dim=0) if (labels == c).any() else torch.zeros(unit.shape[1])
            head.weight[c] = CENTROID_SCALE * nn.functional.normalize(mean, dim=0)
        head.bias.zero_()
    return head
