"""What a recipe is: how a domain turns one batch into anomaly scores and few-label predictions.

A domain's *anomaly recipe* says which features an anomaly scorer reads and which scorer it is;
its *few-label recipe* says which features a classifier reads and how it is fitted. Both are
chosen by measurement (the README's benchmark table says on what) and applied the same way by
``medssl finetune``, ``medssl score``, ``medssl evaluate`` and the Python API, so what a benchmark
measures is what a user gets.

Shapes: ``x`` is a batch of dataset items ``(B, *input_shape)`` (what the encoder reads),
``emb`` the encoder's embeddings ``(B, D)``, ``percentile`` the anomaly percentiles ``(B,)`` in
[0, 100]; features are float64 arrays ``(B, P)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from medssl.registry import Registry

Features = Callable[[torch.Tensor, torch.Tensor, dict[str, Any]], np.ndarray]


def embedding_features(x: torch.Tensor, emb: torch.Tensor, preprocessing: dict[str, Any]) -> np.ndarray:
    """The embeddings themselves ``(B, D)``."""
    return emb.detach().cpu().double().numpy()


@dataclass(frozen=True)
class AnomalyRecipe:
    """Features + scorer for unsupervised anomaly scores.

    ``features(x, emb, preprocessing) -> (B, P)``; ``scorer(n_reference, emb_dim, feature_dim)``
    gives ``(scorer name, kwargs)`` for ``medssl.anomaly.create_scorer`` (sizes let a recipe
    shrink k for a small reference or address the raw and embedding column blocks).
    """

    name: str
    description: str
    features: Features
    scorer: Callable[[int, int, int], tuple[str, dict[str, Any]]]

    def scorer_spec(self, n_reference: int, emb_dim: int, feature_dim: int, override: str | None = None,
                    knn_k: int | None = None) -> tuple[str, dict[str, Any]]:
        """``(scorer name, kwargs)`` to fit on ``n_reference`` rows of this recipe's features.

        ``override`` (a scorer name; ``None``/``"auto"``: the recipe's) swaps the scorer, with its
        defaults. A kNN scorer reads cosine distances (``normalize="l2"``) unless the recipe says
        otherwise, with ``knn_k`` neighbours when given, never more than ``n_reference - 1``.
        """
        name, kwargs = self.scorer(n_reference, emb_dim, feature_dim)
        if override not in (None, "auto") and override != name:
            name, kwargs = str(override), {}
        if name == "knn":
            k = knn_k if knn_k is not None else kwargs.get("k", 10)
            kwargs = {"normalize": "l2", **kwargs, "k": max(1, min(int(k), n_reference - 1))}
        return name, kwargs


@dataclass(frozen=True)
class FewLabelRecipe:
    """Features + fit for a classifier trained on a few labelled cases.

    ``features(x, emb, percentile, preprocessing) -> (B, P)``; ``fit(features (N, P), y (N,)
    class ids, groups (N,) patient ids, n_classes, seed) -> nn.Linear(P, n_classes)`` whose
    softmax is the class probability; with ``fit_reads_emb_dim`` it also gets ``emb_dim=D``, the
    width of the embedding (for features that start with it). ``None`` for ``features``/``fit`` means the classic modes
    (linear probe, kNN, full fine-tuning) on the embeddings, handled by ``medssl.train``; ``auto`` then gives the
    fine-tune settings (``FinetuneConfig`` fields) that ``--mode auto`` stands for, from the labelled cases per
    class ``(C,)`` and whether the encoder starts from random weights (``None``: a linear probe).
    """

    name: str
    description: str
    features: Callable[[torch.Tensor, torch.Tensor, np.ndarray, dict[str, Any]], np.ndarray] | None = None
    fit: Callable[..., nn.Linear] | None = None
    fit_reads_emb_dim: bool = False
    auto: Callable[[list[int], bool], dict[str, Any]] | None = None

    @property
    def on_embeddings(self) -> bool:
        """True for the classic embedding modes (``--mode linear|knn|full``)."""
        return self.features is None


ANOMALY_RECIPES: Registry[AnomalyRecipe] = Registry("anomaly recipe")
FEW_LABEL_RECIPES: Registry[FewLabelRecipe] = Registry("few-label recipe")


def register_anomaly_recipe(recipe: AnomalyRecipe) -> AnomalyRecipe:
    ANOMALY_RECIPES.register(recipe.name)(lambda: recipe)
    return recipe


def register_few_label_recipe(recipe: FewLabelRecipe) -> FewLabelRecipe:
    FEW_LABEL_RECIPES.register(recipe.name)(lambda: recipe)
    return recipe


def linear_head(coef: np.ndarray, bias: np.ndarray, n_classes: int) -> nn.Linear:
    """An ``nn.Linear(P, n_classes)`` from a fitted linear model on raw features.

    ``coef`` ``(1 or C, P)``, ``bias`` ``(1 or C,)``; a binary model (one row) becomes logits
    ``(-z/2, z/2)`` so that the softmax gives ``sigmoid(z)``.
    """
    coef, bias = np.atleast_2d(coef), np.atleast_1d(bias)
    if n_classes == 2 and coef.shape[0] == 1:
        coef = np.concatenate([-coef / 2, coef / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    head = nn.Linear(coef.shape[1], n_classes)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return head
