"""The Lightning wrapper around an ``SSLMethod``: batched views, optimizer, warm-up + cosine LR, EMA hook.

Views: given ``augment`` (a batch transform ``(B, *shape) -> (B, *shape)`` with per-case random
parameters, ``medssl.transforms.batched``), the module turns the loader's raw cases into views
on the training device, after the batch is moved there: ``view1`` and ``view2`` of the batch
are augmented together in one call of ``2B`` cases. The random numbers come from torch's
generator of that device, which ``EpochSeeds`` re-seeds at every epoch start.

On CPU, a method whose networks contain 2-D convolutions trains in the channels-last memory
layout (parameters and 4-D batch tensors; ``medssl.encoders.layout``). Saved weights are ordinary
tensors (checkpoint digests hash them in the standard layout).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import lightning as L
import torch

from medssl.encoders.layout import channels_last_batch, prefers_channels_last
from medssl.methods.base import SSLMethod


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier at optimizer step ``step`` (0-based): linear warm-up, then cosine to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """On the CPU, run the block with one intra-op thread (restored after); elsewhere, unchanged.

    The views are many small element-wise ops (a 128-image batch of 28 px views is ~200k values
    per op): a second thread gains little on an idle machine, and on a busy one every op waits for
    the thread the scheduler put aside (measured on 2 shared cores: 256 views took 80-125 ms with
    two threads, 9-11 ms with one).
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_views(batch: dict[str, Any], augment: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Any]:
    """``batch`` with ``view1`` and ``view2`` ``(B, *shape)`` replaced by their random views (one
    ``augment`` call over the ``2B`` cases, so every case gets its own parameters)."""
    b = batch["view1"].shape[0]
    with torch.no_grad(), one_cpu_thread(batch["view1"].device):
        views = augment(torch.cat([batch["view1"], batch["view2"]]))
    return {**batch, "view1": views[:b], "view2": views[b:]}


class PretrainModule(L.LightningModule):
    """Trains ``method`` on batches of the ``SSLMethod`` contract; the loss is logged as ``loss``."""

    def __init__(
        self,
        method: SSLMethod,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 0,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.method = method
        self.augment = augment
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps

    def on_fit_start(self) -> None:
        self.channels_last = prefers_channels_last(self.method, self.device)
        if self.channels_last:  # in place: the optimizer keeps the same parameter objects
            self.method.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.augment is not None and isinstance(batch, dict) and "view1" in batch:
            batch = make_views(batch, self.augment)
        if getattr(self, "channels_last", False) and isinstance(batch, dict):
            return {k: channels_last_batch(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return batch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.method.training_loss(batch)
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, batch_size=batch["view1"].shape[0])
        return loss

    def on_train_start(self) -> None:
        # A resumed run may train longer than the saved one: put the optimizer's LR back on the
        # schedule for the current total number of steps (a fresh run is unaffected).
        sched = self.lr_schedulers()
        for group, base, factor in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * factor(sched.last_epoch)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.method.on_train_step_end(self.global_step, int(self.trainer.estimated_stepping_batches))

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.method.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]  # no weight decay on biases and norm scales
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if self.optimizer_name == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=self.lr, momentum=0.9)
        else:
            opt = torch.optim.AdamW(groups, lr=self.lr)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = min(self.warmup_steps, total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
