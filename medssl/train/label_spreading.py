"""Label spreading: carry a few labels to the unlabelled cases along the embedding's kNN graph.

With very few labels (1% of a train split: tens of cases, a handful of the rarer class) a linear
probe on frozen SSL embeddings is limited by the labels, not by the embedding: the unlabelled
train cases show where the classes' clusters are. ``spread_labels`` runs scikit-learn's
``LabelSpreading`` (Zhou et al. 2004) on a symmetric k-nearest-neighbour graph of the
L2-normalised embeddings (cosine neighbours, as SSL embeddings are trained to be compared) and
returns a class distribution for every unlabelled case; the fine-tune then fits its linear probe
on the labelled cases plus the unlabelled ones with their spread labels
(``FinetuneConfig.unlabelled = "spread"``).
"""

from __future__ import annotations

import numpy as np
from sklearn.semi_supervised import LabelSpreading

from medssl.errors import ConfigError


def spread_labels(
    emb_labelled: np.ndarray,
    y: np.ndarray,
    emb_unlabelled: np.ndarray,
    n_classes: int,
    k: int = 10,
    alpha: float = 0.2,
    class_mass: bool = False,
    max_iter: int = 100,
) -> np.ndarray:
    """Class probabilities ``(U, n_classes)`` of the unlabelled embeddings ``(U, F)``.

    ``emb_labelled`` ``(L, F)`` with class ids ``y`` ``(L,)`` in ``[0, n_classes)``; ``k``: graph
    neighbours; ``alpha`` in (0, 1): how much a labelled case may be pulled away from its own
    label (0.2: mostly kept). A case the graph does not reach from any label gets the labelled
    class frequencies. Raises ``ConfigError`` for inconsistent shapes or settings.
    """
    emb_labelled = np.asarray(emb_labelled, dtype=np.float64)
    emb_unlabelled = np.asarray(emb_unlabelled, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if emb_labelled.ndim != 2 or emb_unlabelled.ndim != 2 or emb_labelled.shape[1] != emb_unlabelled.shape[1]:
        raise ConfigError(
            f"label spreading needs (L, F) and (U, F) embeddings, got {emb_labelled.shape} and {emb_unlabelled.shape}"
        )
    if y.shape != (len(emb_labelled),):
        raise ConfigError(f"label spreading needs one label per labelled case: {y.shape} labels for {len(emb_labelled)} cases")
    if len(y) == 0 or y.min() < 0 or y.max() >= n_classes:
        raise ConfigError(f"labels must be class ids in [0, {n_classes}), got {np.unique(y).tolist()}")
    if not 0 < alpha < 1:
        raise ConfigError(f"spread_alpha must be in (0, 1), got {alpha}")
    if k < 1:
        raise ConfigError(f"spread_k must be at least 1, got {k}")
    if len(emb_unlabelled) == 0:
        return np.zeros((0, n_classes))
    x = np.concatenate([emb_labelled, emb_unlabelled])
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    target = np.concatenate([y, np.full(len(emb_unlabelled), -1, dtype=np.int64)])
    model = LabelSpreading(kernel="knn", n_neighbors=min(k, len(x) - 1), alpha=alpha, max_iter=max_iter)
    model.fit(x, target)
    dist = np.zeros((len(x), n_classes))
    dist[:, model.classes_] = model.label_distributions_
    proba = dist[len(y):]
    unreached = ~np.isfinite(proba).all(axis=1) | (proba.sum(axis=1) <= 0)
    if unreached.any():
        proba[unreached] = np.bincount(y, minlength=n_classes) / len(y)
    if class_mass:
        prior = np.bincount(y, minlength=n_classes) / len(y)
        mass = proba.sum(axis=0)
        proba = proba * np.where(mass > 0, prior / np.maximum(mass, 1e-300), 0.0)
        empty = proba.sum(axis=1) <= 0
        proba[empty] = prior
    return proba / proba.sum(axis=1, keepdims=True)
