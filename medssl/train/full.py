"""Full fine-tuning: encoder and head trained together, class-weighted, early-stopped on validation rows."""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from medssl.encoders.layout import channels_last_batch, prefers_channels_last
from medssl.metrics import point_metrics
from medssl.models import embed
from medssl.progress import progress
from medssl.train.finetune_config import FinetuneConfig

log = logging.getLogger(__name__)


class _Labelled(Dataset):
    """``(x, y)`` pairs: item ``j`` is ``(dataset[rows[j]], y[j])``."""

    def __init__(self, dataset: Dataset, rows: np.ndarray, y: np.ndarray) -> None:
        self.dataset, self.rows, self.y = dataset, rows, torch.as_tensor(y)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset[int(self.rows[j])], self.y[j]

    def __getitems__(self, js: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A DataLoader's batched fetch: uses the dataset's own ``__getitems__`` when it has one."""
        fetch = getattr(self.dataset, "__getitems__", None)
        rows = [int(self.rows[j]) for j in js]
        xs = fetch(rows) if callable(fetch) else [self.dataset[r] for r in rows]
        return [(x, self.y[j]) for x, j in zip(xs, js)]


def _val_score(model: nn.Sequential, dataset: Dataset, rows: np.ndarray, y: np.ndarray, loss_fn: nn.Module, device: torch.device) -> tuple[float, float]:
    """(validation AUROC or -inf when undefined, class-weighted validation loss)."""
    emb = embed(model[0], dataset, rows, device=device, desc="validating")
    with torch.no_grad():
        logits = model[1](emb.to(device)).cpu()
    loss = float(loss_fn(logits, torch.as_tensor(y)).item())
    auc = point_metrics(y, torch.softmax(logits.double(), 1).numpy())["auroc"]
    return (auc if auc is not None else -math.inf), loss


def train_full(
    encoder: nn.Module,
    head: nn.Linear,
    dataset: Dataset,
    train_rows: np.ndarray,
    y_train: np.ndarray,
    val_rows: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    config: FinetuneConfig,
    lr_encoder: float,
    device: torch.device,
) -> tuple[nn.Module, nn.Linear, dict[str, Any]]:
    """Train encoder + head with class-weighted cross-entropy; early stopping on the validation rows.

    Picks the epoch with the best validation AUROC (ties: lower loss). Without usable validation
    rows (fewer than one case per class) it trains for the full budget. Returns the trained pair
    and a small training log.
    """
    torch.manual_seed(config.seed)
    weights = compute_class_weight("balanced", classes=np.arange(n_classes), y=y_train) if len(np.unique(y_train)) == n_classes else np.ones(n_classes)
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32))
    model = nn.Sequential(encoder, head).to(device)
    channels_last = prefers_channels_last(encoder, device)  # as pretraining does (medssl.encoders.layout)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optim = torch.optim.AdamW(
        [{"params": encoder.parameters(), "lr": lr_encoder}, {"params": head.parameters(), "lr": config.lr_head}],
        weight_decay=config.weight_decay,
    )
    bs = min(config.batch_size, len(train_rows))
    gen = torch.Generator().manual_seed(config.seed)
    pairs = _Labelled(dataset, train_rows, y_train)
    if len(train_rows) // bs < config.min_steps_per_epoch:  # tiny subset: an epoch = a fixed number of draws
        sampler = RandomSampler(pairs, replacement=True, num_samples=config.min_steps_per_epoch * bs, generator=gen)
        loader = DataLoader(pairs, batch_size=bs, sampler=sampler, drop_last=True)
    else:
        loader = DataLoader(pairs, batch_size=bs, shuffle=True, drop_last=True, generator=gen)
    steps_per_epoch = len(loader)
    epochs = config.epochs
    can_validate = len(val_rows) > 0 and len(np.unique(y_val)) == n_classes
    if not can_validate and len(val_rows):
        log.warning("no validation cases of every class: training %d epochs without early stopping", epochs)
    best: tuple[float, float] = (-math.inf, math.inf)
    best_state = copy.deepcopy(model.state_dict())
    best_epoch, stale, history = 0, 0, []
    for epoch in progress(range(1, epochs + 1), total=epochs, desc=f"fine-tuning ({steps_per_epoch} steps/epoch)", unit="epoch"):
        model.train()
        total = 0.0
        for x, y in loader:
            x = x.to(device)
            loss = loss_fn(model(channels_last_batch(x) if channels_last else x), y.to(device))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += float(loss.item())
        entry = {"epoch": epoch, "train_loss": total / steps_per_epoch}
        if can_validate:
            auc, vloss = _val_score(model, dataset, val_rows, y_val, loss_fn.cpu(), device)
            loss_fn.to(device)
            entry.update(val_auroc=auc, val_loss=vloss)
            if auc > best[0] or (auc == best[0] and vloss < best[1]):
                best, best_epoch, stale = (auc, vloss), epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.append(entry)
        if can_validate and stale >= config.patience:
            log.info("early stop at epoch %d (best epoch %d, val AUROC %.4f)", epoch, best_epoch, best[0])
            break
    if can_validate:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    model.cpu().eval()
    return model[0], model[1], {"epochs_run": len(history), "best_epoch": best_epoch, "history": history}
