"""Full fine-tuning on Lightning: encoder and head trained together, class-weighted cross-entropy,
``EarlyStopping`` on the validation AUROC, the best epoch's weights kept (ties: lower loss).

``train_full`` also runs the semi-supervised trainings (``medssl.train.semi_supervised``): targets
may be soft ``(N, C)`` class distributions (distillation), training inputs may be augmented views,
and an extra unlabelled loader may be trained alongside by a ``FullFinetuneModule`` subclass (FixMatch)."""

from __future__ import annotations

import copy
import logging
import math
import warnings
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.utilities import CombinedLoader
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from medssl.encoders.layout import channels_last_batch, prefers_channels_last
from medssl.metrics import point_metrics
from medssl.train.guards import FiniteLoss
from medssl.train.finetune_config import FinetuneConfig
from medssl.train.tracking import make_logger, plot_curves

log = logging.getLogger(__name__)


class _Labelled(Dataset):
    """``(x, y)`` pairs: item ``j`` is ``(dataset[rows[j]], y[j])``, ``x`` through ``augment`` when given.

    ``y``: class ids ``(N,)`` or class distributions ``(N, C)`` (soft targets, float32)."""

    def __init__(self, dataset: Dataset, rows: np.ndarray, y: np.ndarray,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.dataset, self.rows, self.augment = dataset, rows, augment
        self.y = torch.as_tensor(y) if np.asarray(y).ndim == 1 else torch.as_tensor(y, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dataset[int(self.rows[j])]
        return (self.augment(x) if self.augment is not None else x), self.y[j]

    def __getitems__(self, js: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A DataLoader's batched fetch: uses the dataset's own ``__getitems__`` when it has one."""
        fetch = getattr(self.dataset, "__getitems__", None)
        rows = [int(self.rows[j]) for j in js]
        xs = fetch(rows) if callable(fetch) else [self.dataset[r] for r in rows]
        if self.augment is not None:
            xs = [self.augment(x) for x in xs]
        return [(x, self.y[j]) for x, j in zip(xs, js)]


class FullFinetuneModule(L.LightningModule):
    """``nn.Sequential(encoder, head)`` trained with ``loss_fn``; AdamW with the encoder at
    ``lr_encoder`` and the head at ``lr_head``. Logs ``train_loss`` per epoch and, with a
    validation loader, ``val_auroc`` (``-inf`` when undefined) and ``val_loss``."""

    def __init__(self, encoder: nn.Module, head: nn.Linear, loss_fn: nn.Module, lr_encoder: float, lr_head: float,
                 weight_decay: float, channels_last: bool) -> None:
        super().__init__()
        self.model = nn.Sequential(encoder, head)
        self.loss_fn = loss_fn
        self.lr_encoder, self.lr_head, self.weight_decay = lr_encoder, lr_head, weight_decay
        self.channels_last = channels_last
        self._train_losses: list[float] = []
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.history: list[dict[str, Any]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(channels_last_batch(x) if self.channels_last else x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self._train_losses.append(float(loss.detach()))
        self.log("train_loss", loss.detach(), on_step=True, on_epoch=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self._val.append((self(x).float().cpu(), y.cpu()))

    def on_validation_epoch_end(self) -> None:
        logits = torch.cat([lg for lg, _ in self._val])
        y = torch.cat([t for _, t in self._val])
        self._val.clear()
        loss = float(self.loss_fn.cpu()(logits, y))
        self.loss_fn.to(self.device)
        auc = point_metrics(y.numpy(), torch.softmax(logits.double(), 1).numpy())["auroc"]
        auc = auc if auc is not None else -math.inf
        self.log_dict({"val_auroc": auc, "val_loss": loss})

    def on_train_epoch_end(self) -> None:
        entry: dict[str, Any] = {"epoch": self.current_epoch + 1,
                                 "train_loss": float(np.mean(self._train_losses)) if self._train_losses else math.nan}
        self._train_losses.clear()
        metrics = self.trainer.callback_metrics
        if "val_auroc" in metrics:
            entry.update(val_auroc=float(metrics["val_auroc"]), val_loss=float(metrics["val_loss"]))
        self.history.append(entry)
        log.info("fine-tuning epoch %d/%d: %s", entry["epoch"], self.trainer.max_epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch"))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        encoder, head = self.model
        return torch.optim.AdamW(
            [{"params": encoder.parameters(), "lr": self.lr_encoder}, {"params": head.parameters(), "lr": self.lr_head}],
            weight_decay=self.weight_decay,
        )


class KeepBest(Callback):
    """Keeps a copy of the weights of the epoch with the best validation AUROC (ties: lower loss)."""

    def __init__(self) -> None:
        self.best: tuple[float, float] = (-math.inf, math.inf)
        self.best_epoch = 0
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        auc, loss = float(trainer.callback_metrics["val_auroc"]), float(trainer.callback_metrics["val_loss"])
        if auc > self.best[0] or (auc == self.best[0] and loss < self.best[1]):
            self.best, self.best_epoch = (auc, loss), trainer.current_epoch + 1
            self.state = copy.deepcopy(module.state_dict())


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
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    unlabelled: Dataset | None = None,
    module_cls: type["FullFinetuneModule"] | None = None,
    module_options: dict[str, Any] | None = None,
    run_dir: Path | None = None,
) -> tuple[nn.Module, nn.Linear, dict[str, Any]]:
    """Train encoder + head with class-weighted cross-entropy; early stopping on the validation rows.

    ``y_train``: class ids ``(N,)`` or soft targets ``(N, C)`` (class weights then follow their
    argmax); ``augment``: per-sample view of each training input. ``unlabelled`` (a dataset of
    unlabelled items) is drawn ``config.unlabelled_batch_size`` at a time beside every labelled batch
    (an epoch = one pass over it) and the batch reaches ``module_cls(..., **module_options)`` as
    ``{"x": (x, y), "u": unlabelled batch}``. Picks the epoch with the best validation AUROC (ties: lower loss); stops after ``patience``
    epochs without a better AUROC (Lightning ``EarlyStopping``). Without usable validation rows
    (fewer than one case per class) it trains for the full budget. Returns the trained pair and
    a small training log. With ``run_dir`` the loop logs to ``make_logger(config.logger, run_dir)``
    (``train_loss`` per step and epoch, ``val_auroc``/``val_loss`` per epoch) and draws
    ``run_dir/training_curves.png`` (``medssl.train.tracking``); without it nothing is logged.
    """
    from medssl.train.pretrain import tidy_lightning_logging

    torch.manual_seed(config.seed)
    hard = np.asarray(y_train).argmax(axis=1) if np.asarray(y_train).ndim == 2 else np.asarray(y_train)
    weights = compute_class_weight("balanced", classes=np.arange(n_classes), y=hard) if len(np.unique(hard)) == n_classes else np.ones(n_classes)
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32))
    channels_last = prefers_channels_last(encoder, device)  # as pretraining does (medssl.encoders.layout)
    module = (module_cls or FullFinetuneModule)(encoder, head, loss_fn, lr_encoder, config.lr_head, config.weight_decay,
                                                channels_last, **(module_options or {}))
    if channels_last:
        module.to(memory_format=torch.channels_last)
    bs = min(config.batch_size, len(train_rows))
    gen = torch.Generator().manual_seed(config.seed)
    pairs = _Labelled(dataset, train_rows, y_train, augment)
    loader: DataLoader | CombinedLoader
    if len(train_rows) // bs < config.min_steps_per_epoch:  # tiny subset: an epoch = a fixed number of draws
        sampler = RandomSampler(pairs, replacement=True, num_samples=config.min_steps_per_epoch * bs, generator=gen)
        loader = DataLoader(pairs, batch_size=bs, sampler=sampler, drop_last=True)
    else:
        loader = DataLoader(pairs, batch_size=bs, shuffle=True, drop_last=True, generator=gen)
    if unlabelled is not None:  # an epoch = one pass over the unlabelled cases; the labelled batches cycle
        bs_u = min(config.unlabelled_batch_size, len(unlabelled))
        u_loader = DataLoader(unlabelled, batch_size=bs_u, shuffle=True, drop_last=True, generator=gen)
        loader = CombinedLoader({"x": loader, "u": u_loader}, mode="max_size_cycle")
    can_validate = len(val_rows) > 0 and len(np.unique(y_val)) == n_classes
    if not can_validate and len(val_rows):
        log.warning("no validation cases of every class: training %d epochs without early stopping", config.epochs)
    keep = KeepBest()
    callbacks: list[Callback] = [keep, EarlyStopping("val_auroc", mode="max", patience=config.patience, check_finite=False)]
    val_loader = DataLoader(_Labelled(dataset, val_rows, y_val), batch_size=256, shuffle=False) if can_validate else None
    tidy_lightning_logging()
    trainer = L.Trainer(
        max_epochs=config.epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
        logger=make_logger(config.logger, run_dir) if run_dir is not None else False, log_every_n_steps=1,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
        callbacks=[*(callbacks if can_validate else []), FiniteLoss("fine-tuning")], num_sanity_val_steps=0,
        deterministic=False,
    )
    steps = len(loader) if isinstance(loader, DataLoader) else max(len(lo) for lo in loader.flattened)
    log.info("fine-tuning: %d steps per epoch, at most %d epochs", steps, config.epochs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
        trainer.fit(module, train_dataloaders=loader, val_dataloaders=val_loader)
    if run_dir is not None:
        plot_curves(run_dir, f"finetune full: {Path(run_dir).resolve().name}")
    history = module.history
    if can_validate and keep.state is not None:
        module.load_state_dict(keep.state)
        best_epoch = keep.best_epoch
        if len(history) < config.epochs:
            log.info("early stop at epoch %d (best epoch %d, val AUROC %.4f)", len(history), best_epoch, keep.best[0])
    else:
        best_epoch = len(history)
    model = module.model.cpu().eval()
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    return model[0], model[1], {"epochs_run": len(history), "best_epoch": best_epoch, "history": history}
