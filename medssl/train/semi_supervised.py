"""Semi-supervised fine-tuning: the train-split cases outside the labelled subset, labels unused.

``FinetuneConfig.unlabelled`` picks how they are used (``medssl finetune --unlabelled``):

- ``spread`` (linear mode): label spreading on the frozen embeddings (``medssl.train.probe``);
- ``fixmatch`` (full mode): consistency training with confident pseudo-labels (``medssl.train.fixmatch``);
- ``distill`` (linear or full teacher): SimCLRv2-style teacher -> student on augmented views
  of every train case (``medssl.train.distill``).

The unlabelled cases are the train pool (train split, or every row without one) minus the
labelled and validation rows: evaluation cases are never trained on, not even without labels.
Augmented views come from the data domain's ``make_augment`` with the checkpoint's pretraining
``augment`` options (or ``FinetuneConfig.unlabelled_augment``), so they work for any domain.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from medssl.data import get_domain
from medssl.train.distill import train_distill
from medssl.train.finetune_config import FinetuneConfig
from medssl.train.finetune_data import FinetuneData
from medssl.train.fixmatch import FixMatchModule, WeakStrong
from medssl.train.full import train_full

log = logging.getLogger(__name__)

SEMI_SUPERVISED = ("fixmatch", "distill")  # the settings of FinetuneConfig.unlabelled fitted here


def unlabelled_rows(data: FinetuneData, train_rows: np.ndarray, val_rows: np.ndarray) -> np.ndarray:
    """Train-pool rows that are neither trained on with labels nor validated on, sorted."""
    used = np.concatenate([np.asarray(train_rows, dtype=np.int64), np.asarray(val_rows, dtype=np.int64)])
    return np.setdiff1d(np.flatnonzero(data.train_pool()), used)


def view_augment(data: FinetuneData, config: FinetuneConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The domain's per-sample augmentation with ``config.unlabelled_augment`` or else the
    checkpoint's pretraining ``augment`` options (an earlier model.pt keeps them in ``pretrain_config``)."""
    meta = data.checkpoint.meta
    options = config.unlabelled_augment
    if options is None:
        pre = meta.get("pretrain_config") or (meta.get("config") if data.checkpoint.kind == "encoder" else None) or {}
        options = pre.get("augment") or {}
    return get_domain(str(meta["domain"])).make_augment(dict(options))


def fit_semi_supervised(
    data: FinetuneData,
    encoder: nn.Module,
    head: nn.Linear,
    train_rows: np.ndarray,
    y_train: np.ndarray,
    val_rows: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    config: FinetuneConfig,
    lr_encoder: float,
    device: torch.device,
) -> tuple[nn.Module, nn.Linear, dict[str, Any]]:
    """Train ``(encoder, head)`` with ``config.unlabelled`` (fixmatch or distill); returns it + a training log.

    For ``fixmatch`` ``(encoder, head)`` is the starting point (pretrained encoder + linear probe, or
    a random init); for ``distill`` it is the fitted teacher. Without unlabelled cases fixmatch
    falls back to plain full fine-tuning and distill returns the teacher.
    """
    unl = unlabelled_rows(data, train_rows, val_rows)
    log.info("%s: %d labelled + %d unlabelled train cases", config.unlabelled, len(train_rows), len(unl))
    if len(unl) == 0:
        log.warning("unlabelled: %s found no unlabelled train cases; using the labelled cases only", config.unlabelled)
        if config.unlabelled == "distill":
            return encoder, head, {"n_unlabelled": 0}
        enc, hd, train_log = train_full(encoder, head, data.dataset, train_rows, y_train, val_rows, y_val, n_classes,
                                        config, lr_encoder, device)
        return enc, hd, {**train_log, "n_unlabelled": 0}
    augment = view_augment(data, config)
    if config.unlabelled == "distill":
        return train_distill((encoder, head), data.dataset, train_rows, y_train, unl, val_rows, y_val, n_classes,
                             config, lr_encoder, device, augment)
    enc, hd, train_log = train_full(
        encoder, head, data.dataset, train_rows, y_train, val_rows, y_val, n_classes, config, lr_encoder, device,
        unlabelled=WeakStrong(data.dataset, unl, augment), module_cls=FixMatchModule,
        module_options={"threshold": config.fixmatch_threshold, "weight": config.fixmatch_weight},
    )
    return enc, hd, {**train_log, "n_unlabelled": int(len(unl))}
