"""Recipes every domain can use: a kNN anomaly scorer and the classic modes on the embeddings."""

from __future__ import annotations

import logging
from typing import Any

from medssl.domains.recipe import (
    AnomalyRecipe,
    FewLabelRecipe,
    embedding_features,
    register_anomaly_recipe,
    register_few_label_recipe,
)

log = logging.getLogger(__name__)

KNN_K = 10  # neighbours (fewer when the reference is small)


def _knn(n_reference: int, emb_dim: int, feature_dim: int) -> tuple[str, dict[str, Any]]:
    # cosine geometry (l2-normalised embeddings): what contrastive and non-contrastive methods train
    k = max(1, min(KNN_K, n_reference - 1))
    if k < KNN_K:  # a small reference set: fewer neighbours, never a failure
        log.warning("only %d reference cases: the kNN anomaly scorer uses k=%d neighbours instead of %d",
                    n_reference, k, KNN_K)
    return "knn", {"k": k, "normalize": "l2"}


EMBEDDING_KNN = register_anomaly_recipe(AnomalyRecipe(
    name="embedding_knn",
    description="mean cosine distance to the 10 nearest reference embeddings",
    features=embedding_features,
    scorer=_knn,
))

EMBEDDING_HEAD = register_few_label_recipe(FewLabelRecipe(
    name="embedding_head",
    description="a classifier on the embeddings: linear probe, kNN vote or full fine-tuning (--mode)",
))

PROBE_MIN_PER_CLASS = 10  # fewer labelled cases in a class: fine-tune on views instead of a linear probe


def _views_or_probe(per_class: list[int], random_init: bool) -> dict[str, Any]:
    if random_init or min(per_class) < PROBE_MIN_PER_CLASS:  # a random encoder has no features to probe
        return {"mode": "full", "labelled_views": True}
    return {"mode": "linear", "labelled_views": False}


VIEWS_OR_PROBE = register_few_label_recipe(FewLabelRecipe(
    name="views_or_probe",
    description=f"a class with fewer than {PROBE_MIN_PER_CLASS} labelled cases: full fine-tuning of encoder + head "
                "on augmented views of the labelled cases (the pretraining views), early stopping on the val split; "
                "else a linear probe on the frozen embeddings",
    auto=_views_or_probe,
))
