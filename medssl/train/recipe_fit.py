"""Fitting a domain's recipes (``medssl.domains``) on a fine-tuning data set.

- ``recipe_batches``: run an encoder over dataset rows, giving each batch's inputs ``x``
  ``(B, *input_shape)`` and embeddings ``(B, D)`` to a function (the recipes read both);
- ``fit_anomaly``: the anomaly recipe's scorer fitted on the train split's recipe features;
- ``fit_recipe_classifier``: the few-label recipe's classifier on the labelled rows, with
  validation metrics on the manifest's labelled val rows.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from torch import nn
from torch.utils.data import DataLoader, Subset

from medssl.domains import AnomalyRecipe, FewLabelRecipe
from medssl.encoders.inference import InferenceEncoder
from medssl.errors import ConfigError
from medssl.metrics import classification_metrics
from medssl.progress import progress
from medssl.train.classifier import FitResult, class_ids, known_rows
from medssl.train.embedding_cache import EmbeddingCache
from medssl.train.finetune_config import FinetuneConfig
from medssl.train.finetune_data import FinetuneData
from medssl.train.labels import class_names

log = logging.getLogger(__name__)


def recipe_batches(encoder: nn.Module, dataset: Any, rows: np.ndarray, fn: Callable[[torch.Tensor, torch.Tensor], np.ndarray],
                   batch_size: int = 256, desc: str = "embedding", cache: EmbeddingCache | None = None) -> np.ndarray:
    """``fn(x, emb)`` over ``dataset[rows]`` in batches, concatenated ``(len(rows), P)``.

    With ``cache`` (``rows`` index the manifest), embeddings a previous run computed are read from
    it and the new ones are added to it; the encoder runs only on batches holding a new row."""
    rows = np.asarray(rows, dtype=np.int64)
    loader = DataLoader(Subset(dataset, [int(r) for r in rows]), batch_size=batch_size, shuffle=False)
    fast = InferenceEncoder(encoder, torch.device("cpu"))
    out: list[np.ndarray] = []
    reused = 0
    with torch.inference_mode():
        for i, x in enumerate(progress(loader, total=len(loader), desc=desc, unit="batch")):
            batch_rows = rows[i * batch_size: i * batch_size + len(x)]
            if cache is not None and not cache.missing(batch_rows):
                emb, reused = cache.get(batch_rows), reused + len(batch_rows)
            else:
                emb = fast(x).float()
                if cache is not None:
                    cache.put(batch_rows, emb)
            out.append(np.asarray(fn(x, emb)))
    if cache is not None:
        if reused:
            log.info("%s: embeddings of %d of %d cases read from %s", desc, reused, len(rows), cache.path)
        cache.save()
    return np.concatenate(out) if out else np.zeros((0, 0))


def fit_anomaly(
    recipe: AnomalyRecipe, encoder: nn.Module, data: FinetuneData, rows: np.ndarray, scorer: str | None, scorer_k: int,
    cache: EmbeddingCache | None = None,
) -> tuple[Any, dict[str, Any]] | None:
    """The anomaly scorer fitted on the recipe features of ``rows`` (the train split), and its
    ``{"name", "kwargs"}``; ``scorer`` overrides the recipe's scorer by name. ``None`` with fewer than 3 rows.
    ``cache``: the encoder's embedding cache (``recipe_batches``)."""
    from medssl.anomaly import create_scorer

    if len(rows) < 3:
        log.warning("only %d train case(s): no anomaly scorer is stored", len(rows))
        return None
    prep = data.checkpoint.meta.get("preprocessing") or {}
    feats = recipe_batches(encoder, data.dataset, rows, lambda x, e: recipe.features(x, e, prep),
                           desc="anomaly reference (train split)", cache=cache)
    name, kwargs = recipe.scorer_spec(len(rows), int(encoder.num_features), feats.shape[1], scorer, scorer_k)
    log.info("anomaly recipe %r: %s scorer fitted on %d train cases", recipe.name, name, len(rows))
    return create_scorer(name, **kwargs).fit(feats), {"name": name, "kwargs": kwargs}


def fit_recipe_classifier(
    data: FinetuneData, subset: np.ndarray, config: FinetuneConfig, recipe: FewLabelRecipe, anomaly: AnomalyRecipe,
    scorer: Any, encoder: nn.Module, cache: EmbeddingCache | None = None,
) -> FitResult:
    """The few-label recipe's head over ``recipe.features(x, emb, anomaly percentile)`` of the
    labelled ``subset``; metrics on the manifest's labelled val rows (none: ``metrics=None``)."""
    if scorer is None:
        raise ConfigError(f"few-label recipe {recipe.name!r} reads anomaly percentiles: keep the anomaly scorer "
                          "(scorer: auto) or pick --mode linear")
    prep = data.checkpoint.meta.get("preprocessing") or {}
    classes = class_names(pd.Series(data.labels[subset]))
    val_rows = np.zeros(0, dtype=np.int64)
    if data.split is not None:
        val_rows = known_rows(data, np.flatnonzero((data.split == "val") & pd.notna(data.labels)), classes)

    def features(x: torch.Tensor, emb: torch.Tensor) -> np.ndarray:
        pct = scorer.percentile(scorer.score(anomaly.features(x, emb, prep)))
        return recipe.features(x, emb, pct, prep)

    rows = np.concatenate([subset, val_rows])
    feats = recipe_batches(encoder, data.dataset, rows, features, desc="recipe features (labelled cases)", cache=cache)
    y = class_ids(data.labels, subset, classes)
    extra = {"emb_dim": int(encoder.num_features)} if recipe.fit_reads_emb_dim else {}
    with threadpool_limits(limits=1, user_api="blas"):  # many small solver steps: 2+ BLAS threads only contend
        head = recipe.fit(feats[: len(subset)], y, data.patient_ids[subset], len(classes), config.seed, **extra)
    metrics = None
    if len(val_rows):
        with torch.no_grad():
            logits = head(torch.as_tensor(feats[len(subset):], dtype=torch.float32))
        proba = torch.softmax(logits.double(), dim=1).numpy()
        metrics = {"n": int(len(val_rows)), **classification_metrics(class_ids(data.labels, val_rows, classes), proba, classes)}
    log.info("few-label recipe %r fitted on %d labelled cases", recipe.name, len(subset))
    train_log = {"n_train": int(len(subset)), "n_val": int(len(val_rows)),
                 "validation": "val" if len(val_rows) else "none", "recipe": recipe.name}
    return FitResult(encoder, head, classes, None, metrics, train_log)
