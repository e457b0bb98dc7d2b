"""Pretraining progress through ``medssl.progress``: "Epoch 3/10" with the run's steps, rate and ETA.

Replaces Lightning's own bar, which numbers epochs from 0 (``Epoch 0/9``, or ``Epoch 0`` with no
total) and redraws into log files. One display covers the whole run, so its ETA is the run's;
on a terminal it is a bar, elsewhere a log line every few seconds (see ``medssl.progress``).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

from medssl.progress import Progress


def planned_epochs(trainer: L.Trainer) -> int | None:
    """How many epochs the run will reach: ``max_epochs``, fewer when ``max_steps`` ends it first."""
    epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
    per_epoch = trainer.num_training_batches
    if trainer.max_steps not in (None, -1) and per_epoch not in (0, float("inf")):
        by_steps = math.ceil(trainer.max_steps * trainer.accumulate_grad_batches / per_epoch)
        epochs = by_steps if epochs is None else min(epochs, by_steps)
    return epochs


def epoch_label(trainer: L.Trainer) -> str:
    """``Epoch E/N`` counted from 1, e.g. ``Epoch 1/10`` during the first of ten epochs."""
    total = planned_epochs(trainer)
    return f"Epoch {trainer.current_epoch + 1}" + (f"/{total}" if total else "")


class EpochProgressBar(ProgressBar):
    """Lightning progress bar callback that shows the run's optimizer steps (global rank 0 only)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._progress: Progress | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled:
            self._progress = Progress(
                total=trainer.estimated_stepping_batches, desc=epoch_label(trainer), unit="step",
                initial=trainer.global_step,
            )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._progress is not None:
            self._progress.set_description(epoch_label(trainer))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._progress is None:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if hasattr(loss, "detach"):
            loss = loss.detach()  # read (one device sync) only when a line or redraw shows it
        self._progress.update(
            trainer.global_step - self._progress.n,
            postfix=(lambda: f"loss {float(loss):.4g}") if loss is not None else None,
        )

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close()
