"""SimCLRv2-style distillation (Chen et al. 2020): a fine-tuned teacher labels every train case,
a student learns those soft labels on augmented views.

The teacher is the fitted classifier of the fine-tune's mode (a linear probe on the frozen
pretrained encoder, or a fully fine-tuned encoder + head). Its class probabilities at
temperature ``T`` on each unlabelled train case (un-augmented) become that case's target; the
labelled cases keep their one-hot labels. The student starts from the teacher's weights (the
self-distillation form of SimCLRv2) and is trained end to end (``train_full``: class-weighted
soft cross-entropy, each input a random view from the domain's ``make_augment``), with the same
early-stopping rules as full fine-tuning.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from medssl.models import embed
from medssl.train.finetune_config import FinetuneConfig
from medssl.train.full import train_full


def teacher_targets(encoder: nn.Module, head: nn.Linear, dataset: Dataset, rows: np.ndarray, temperature: float,
                    device: torch.device) -> np.ndarray:
    """The teacher's class distributions ``(len(rows), C)`` float32: ``softmax(head(encoder(x)) / T)``."""
    emb = embed(encoder, dataset, rows, device=device, desc="teacher labels the unlabelled cases")
    with torch.no_grad():
        logits = head.cpu()(emb.to(head.weight.dtype))
    return torch.softmax(logits.double() / temperature, dim=1).float().numpy()


def train_distill(
    teacher: tuple[nn.Module, nn.Linear],
    dataset: Dataset,
    train_rows: np.ndarray,
    y_train: np.ndarray,
    unl_rows: np.ndarray,
    val_rows: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    config: FinetuneConfig,
    lr_encoder: float,
    device: torch.device,
    augment: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[nn.Module, nn.Linear, dict[str, Any]]:
    """Student ``(encoder, head)`` trained on labelled rows (one-hot) + ``unl_rows`` (teacher's soft labels).

    ``y_train`` ``(L,)`` class ids of ``train_rows``; the teacher is left unchanged. Returns the
    student and the training log (with ``n_unlabelled`` and the teacher's class shares on them).
    """
    encoder, head = teacher
    encoder.eval()
    soft = teacher_targets(encoder, head, dataset, unl_rows, config.distill_temperature, device)
    student_encoder, student_head = copy.deepcopy(encoder).to(device).train(), copy.deepcopy(head).to(device).train()
    rows = np.concatenate([train_rows, unl_rows])
    targets = np.concatenate([np.eye(n_classes, dtype=np.float32)[y_train], soft])
    student_encoder, student_head, log = train_full(
        student_encoder, student_head, dataset, rows, targets, val_rows, y_val, n_classes, config, lr_encoder, device,
        augment=augment,
    )
    log.update(n_unlabelled=int(len(unl_rows)), teacher_class_shares=soft.mean(axis=0).round(4).tolist())
    return student_encoder, student_head, log
