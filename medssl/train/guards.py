"""Lightning callbacks that keep a training run honest and repeatable.

- :class:`FiniteLoss` stops training at the first non-finite loss, before it reaches the weights,
  with one line naming the step and the likely causes.
- :class:`EpochSeeds` makes every epoch a function of ``(seed, epoch)`` alone: at each epoch start
  the data order (the loader's generator) and the random number generators that draw the
  augmentations (torch, NumPy, ``random``) are re-seeded from the two. A run resumed from an
  epoch end then continues exactly as the uninterrupted run did.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import torch

from medssl.errors import MedsslError

_EPOCH_STRIDE = 1_000_003  # a prime: (seed, epoch) pairs map to distinct seeds


class NonFiniteLossError(MedsslError):
    """The training loss became NaN or infinite; nothing after the last good epoch was saved."""


class FiniteLoss(L.Callback):
    """Raise :class:`NonFiniteLossError` when a step's loss is NaN or infinite (before backward).

    ``what`` names the run in the message (e.g. "pretraining"); ``saved`` is the file that holds
    the last good epoch's weights, if the run writes one.
    """

    def __init__(self, what: str, saved: Path | None = None) -> None:
        self.what = what
        self.saved = saved

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        value = loss.detach().float().reshape(-1)[0].item()
        kept = ""
        if self.saved is not None:
            kept = (f"; the last finished epoch's weights are in {self.saved}" if self.saved.is_file()
                    else "; no epoch had finished, nothing was saved")
        raise NonFiniteLossError(
            f"{self.what} stopped: the loss became {value} at step {trainer.global_step + 1} "
            f"(epoch {trainer.current_epoch + 1}); likely causes: a learning rate too high (lr is {lr:.3g}; "
            f"try 10x lower), or NaN/infinite values in the data (check DATA_DIR/errors.csv and re-ingest){kept}"
        )


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded ``seed`` (fits NumPy's 32-bit seeds)."""
    return (seed * _EPOCH_STRIDE + epoch) % (2**32)


class EpochSeeds(L.Callback):
    """Re-seed data order and augmentation at every epoch start from ``(seed, epoch)``.

    ``generator`` is the one the training loader shuffles with (``DataLoader(generator=...)``).
    Loader worker processes draw their seeds from that generator when they start; persistent
    workers (``num_workers > 0``) keep their streams across epochs, so with them a resumed run has
    the same data order but other augmentations than the uninterrupted one.
    """

    def __init__(self, seed: int, generator: torch.Generator) -> None:
        self.seed = seed
        self.generator = generator

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        s = epoch_seed(self.seed, trainer.current_epoch)
        self.generator.manual_seed(s)
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)
