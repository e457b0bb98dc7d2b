"""The files a pretraining run keeps in RUN_DIR, written by a Lightning callback on global rank 0.

- ``config.yaml``: the resolved config (at fit start).
- ``metrics.csv``: one row per optimizer step: ``epoch, step, loss, lr`` (``step`` counts from 1;
  written at the end of every epoch together with ``last.ckpt``, so the two always agree).
- ``last.ckpt``: Lightning's full training state (weights, optimizer, LR schedule, loop counters)
  every epoch; ``--resume`` continues from it.
- ``checkpoint.pt``: the self-describing encoder checkpoint (``medssl.checkpoints``), every epoch
  and at the end.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch

from medssl.checkpoints import Checkpoint, save_checkpoint
from medssl.config import StrictConfig, save_config

log = logging.getLogger(__name__)

METRICS_COLUMNS = ("epoch", "step", "loss", "lr")
LAST_CKPT = "last.ckpt"
ENCODER_CKPT = "checkpoint.pt"
METRICS_CSV = "metrics.csv"
CONFIG_YAML = "config.yaml"


def truncate_metrics(path: Path, max_step: int) -> int:
    """Drop rows of ``metrics.csv`` whose step is past ``max_step`` (a resumed run redoes them).

    Returns the number of rows kept.
    """
    if not path.is_file():
        return 0
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= max_step]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


class RunFiles(L.Callback):
    """Writes config.yaml, metrics.csv, last.ckpt and checkpoint.pt into ``run_dir``.

    ``encoder_meta()`` returns the JSON-able checkpoint meta (encoder name/kwargs, domain, method,
    preprocessing, config, n_cases ...); epoch and global_step are added at save time.
    """

    def __init__(self, run_dir: Path, config: StrictConfig, encoder_meta: Callable[[], dict[str, Any]]) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.encoder_meta = encoder_meta
        self._rows: list[dict[str, Any]] = []
        self._lr = float("nan")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.run_dir / CONFIG_YAML)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])  # the LR this step uses

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._rows.append(
            {"epoch": trainer.current_epoch, "step": trainer.global_step, "loss": float(loss), "lr": self._lr}
        )

    def _flush_metrics(self, trainer: L.Trainer) -> None:
        rows, self._rows = self._rows, []  # every rank clears; global rank 0 writes
        if not trainer.is_global_zero:
            return
        path = self.run_dir / METRICS_CSV
        new_file = not path.is_file()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS)
            if new_file:
                writer.writeheader()
            writer.writerows(rows)

    def save_encoder(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        """Write ``checkpoint.pt`` (kind "encoder") for the current weights; returns its path."""
        encoder: torch.nn.Module = pl_module.method.encoder  # type: ignore[attr-defined]
        meta = {**self.encoder_meta(), "epoch": trainer.current_epoch, "global_step": trainer.global_step}
        ckpt = Checkpoint(kind="encoder", meta=meta, states={"encoder": encoder.state_dict()})
        return save_checkpoint(self.run_dir / ENCODER_CKPT, ckpt)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush_metrics(trainer)
        trainer.save_checkpoint(self.run_dir / LAST_CKPT, weights_only=False)  # collective: every rank calls it
        if trainer.is_global_zero:
            self.save_encoder(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._rows:  # rows not yet flushed by an epoch end
            self._flush_metrics(trainer)
            trainer.save_checkpoint(self.run_dir / LAST_CKPT, weights_only=False)
        if trainer.is_global_zero:
            path = self.save_encoder(trainer, pl_module)
            log.info("pretraining done: %d steps, encoder written to %s", trainer.global_step, path)
