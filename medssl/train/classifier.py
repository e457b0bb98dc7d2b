"""``fit_classifier``: the classic few-label modes on embeddings (linear probe, kNN, full fine-tuning)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from medssl.errors import ConfigError
from medssl.metrics import classification_metrics
from medssl.models import KnnMemory, build_encoder, centroid_head, embed, resolve_device
from medssl.train.finetune_config import FinetuneConfig, resolve_mode, trains_encoder
from medssl.train.finetune_data import FinetuneData
from medssl.train.full import train_full
from medssl.train.labels import class_names, validation_split
from medssl.train.probe import _spread_probe, linear_probe
from medssl.train.semi_supervised import SEMI_SUPERVISED, fit_semi_supervised, view_augment
from medssl.train.threshold import balanced_threshold, shift_head_to_threshold

log = logging.getLogger(__name__)


def class_ids(labels: np.ndarray, rows: np.ndarray, classes: list[str]) -> np.ndarray:
    """Class indices ``(len(rows),)`` of ``labels[rows]`` in ``classes``."""
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[labels[i]] for i in rows], dtype=np.int64)


def known_rows(data: FinetuneData, rows: np.ndarray, classes: list[str]) -> np.ndarray:
    """``rows`` that carry a label among ``classes`` (a class unseen in training cannot be scored)."""
    keep = np.array([data.labels[i] in classes for i in rows], dtype=bool)
    if (~keep).any():
        log.warning("%d validation case(s) without a label of a trained class are left out", int((~keep).sum()))
    return rows[keep]


def proba_from_embeddings(head: nn.Linear, knn: KnnMemory | None, emb: torch.Tensor, n_classes: int) -> np.ndarray:
    """Class probabilities ``(N, C)`` of embeddings ``(N, F)``: the kNN vote, else ``softmax(head)``."""
    if knn is not None:
        return knn.predict_proba(emb, n_classes)
    with torch.no_grad():
        logits = head(emb.to(head.weight.device, head.weight.dtype))
    return torch.softmax(logits.double(), dim=1).cpu().numpy()


@dataclass
class FitResult:
    """A fitted classifier: encoder + head (+ kNN memory), classes, validation metrics, training log."""

    encoder: nn.Module
    head: nn.Linear
    classes: list[str]
    knn: KnnMemory | None
    metrics: dict[str, Any] | None
    train_log: dict[str, Any]


def fit_classifier(
    data: FinetuneData,
    subset: np.ndarray,
    val_rows: np.ndarray | None,
    config: FinetuneConfig,
    frozen_embeddings: torch.Tensor | None = None,
    run_dir: Path | None = None,
) -> FitResult:
    """Fit the classifier of ``config.mode`` on the labelled rows ``subset``.

    ``val_rows``: rows for validation metrics and early stopping; ``None`` uses the manifest's
    labelled val split, or (full mode, no such split) holds out ``val_fraction`` of the subset's
    patients. ``frozen_embeddings`` ``(N, F)`` over every manifest row may be passed to skip
    re-embedding (linear/knn with the checkpoint's own encoder only).
    """
    if config.mode == "auto":
        config = config.model_copy(update={"mode": resolve_mode(config, recipe_on_embeddings=True)})
    if config.mode == "recipe":
        raise ConfigError("fit_classifier fits the embedding modes (linear, knn, full); the recipe mode is "
                          "fitted by medssl.train.recipe_fit")
    device = resolve_device(config.device)
    classes = class_names(pd.Series(data.labels[subset]))
    meta = data.checkpoint.meta
    state = data.checkpoint.states.get("encoder") if config.init == "pretrained" else None
    if config.init == "random" and config.mode != "full":
        raise ConfigError(f"a randomly initialised encoder can only be trained in full mode, not {config.mode!r}")
    torch.manual_seed(config.seed)
    encoder = build_encoder(meta, state).to(device)
    if val_rows is None and data.split is not None:
        val_rows = np.flatnonzero((data.split == "val") & pd.notna(data.labels))
    train_rows = subset
    validation = "val" if val_rows is not None and len(val_rows) else "none"
    if (val_rows is None or len(val_rows) == 0) and trains_encoder(config):
        held_train, held_val = validation_split(subset, data.patient_ids, data.labels, config.val_fraction, config.seed)
        per_class = pd.Series(data.labels[held_val]).value_counts().reindex(classes, fill_value=0)
        if int(per_class.min()) >= config.min_holdout_per_class:
            validation = "held-out labelled patients"
            train_rows, val_rows = held_train, held_val
            log.info("early stopping on %d held-out labelled cases (%d left to train on)", len(val_rows), len(train_rows))
        else:
            validation = "none (too few labelled cases to hold out)"
            val_rows = np.zeros(0, dtype=np.int64)
            log.info(
                "a held-out split would keep %d case(s) of its rarest class (< min_holdout_per_class=%d): "
                "training on all %d labelled cases for %d epochs, no early stopping",
                int(per_class.min()), config.min_holdout_per_class, len(subset), config.epochs,
            )
    val_rows = known_rows(data, np.asarray(val_rows if val_rows is not None else [], dtype=np.int64), classes)
    y_train = class_ids(data.labels, train_rows, classes)
    y_val = class_ids(data.labels, val_rows, classes)

    knn, train_log = None, {}
    n_classes = len(classes)
    if config.mode in ("linear", "knn") or config.init == "pretrained":
        emb_train = (
            frozen_embeddings[torch.as_tensor(train_rows, dtype=torch.long)]
            if frozen_embeddings is not None and config.init == "pretrained"
            else embed(encoder, data.dataset, train_rows, device=device, desc="embedding labelled cases")
        )
    if config.mode == "knn":
        knn = KnnMemory(emb_train, torch.as_tensor(y_train), config.knn_k)
        head = centroid_head(emb_train, torch.as_tensor(y_train), n_classes)
    elif config.mode == "linear" and config.unlabelled == "spread":
        head, train_log = _spread_probe(data, train_rows, y_train, n_classes, val_rows, emb_train, encoder, frozen_embeddings, config)
    elif config.mode == "linear" or config.init == "pretrained":
        head = linear_probe(emb_train.numpy(), y_train, data.patient_ids[train_rows], n_classes, config.seed)
    else:
        head = nn.Linear(encoder.num_features, n_classes)
    lr_enc = config.lr_encoder if config.init == "pretrained" else config.lr_head
    if config.mode == "full" and config.unlabelled != "fixmatch":
        augment = view_augment(data, config) if config.labelled_views else None
        encoder, head, train_log = train_full(
            encoder, head, data.dataset, train_rows, y_train, val_rows, y_val, n_classes, config, lr_enc, device,
            augment=augment, run_dir=run_dir,
        )
    if config.unlabelled in SEMI_SUPERVISED:  # fixmatch: from the probe; distill: the fitted classifier is the teacher
        teacher_log = train_log
        encoder, head, train_log = fit_semi_supervised(
            data, encoder, head, train_rows, y_train, val_rows, y_val, n_classes, config, lr_enc, device
        )
        if teacher_log:
            train_log["teacher"] = teacher_log
    encoder = encoder.cpu().eval()
    metrics = None
    if len(val_rows):
        emb_val = (
            frozen_embeddings[torch.as_tensor(val_rows, dtype=torch.long)]
            if frozen_embeddings is not None and not trains_encoder(config) and config.init == "pretrained"
            else embed(encoder, data.dataset, val_rows, desc="embedding validation cases")
        )
        proba = proba_from_embeddings(head, knn, emb_val, n_classes)
        metrics = {"n": int(len(val_rows)), **classification_metrics(y_val, proba, classes)}
        if validation == "held-out labelled patients" and n_classes == 2 and knn is None and head.bias is not None:
            _set_decision_threshold(head, y_val, np.asarray(proba)[:, 1], metrics, train_log)
    train_log.update(n_train=int(len(train_rows)), n_val=int(len(val_rows)), validation=validation)
    return FitResult(encoder, head, classes, knn, metrics, train_log)


def _set_decision_threshold(
    head: nn.Linear, y_val: np.ndarray, p1: np.ndarray, metrics: dict[str, Any], train_log: dict[str, Any]
) -> None:
    """Fold the held-out patients' balanced-accuracy cut-off into ``head`` (``medssl.train.threshold``).

    ``metrics`` stay those of the unshifted head (the cut-off is fitted on these very cases, so its
    own balanced accuracy there is optimistic); ``train_log["decision_threshold"]`` records both."""
    t = balanced_threshold(y_val, p1)
    if t is None:
        return
    shift_head_to_threshold(head, t)
    after = float(balanced_accuracy_score(y_val, (p1 >= t).astype(int)))
    train_log["decision_threshold"] = {
        "p_class1": t, "n_heldout": int(len(y_val)),
        "balanced_accuracy_before": metrics["balanced_accuracy"], "balanced_accuracy_after_on_heldout": after,
    }
    log.info("decision threshold P(class 1) >= %.4g chosen on %d held-out labelled cases "
             "(their balanced accuracy %.3f -> %.3f)", t, len(y_val), metrics["balanced_accuracy"], after)
