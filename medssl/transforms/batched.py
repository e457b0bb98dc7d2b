"""The batch form of a domain's augmentation (what pretraining applies on the training device).

A domain's ``make_augment(options)`` returns a callable for one case; the built-in ones
(``ImageAugment``, ``SeriesAugment``, ``FeatureCorruption``) also offer ``batch(x)``, which draws
every case's own random parameters as tensors in one go. ``batched(augment)`` returns that, or,
for an augment without one (a third-party domain), a loop of per-case calls.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch


@runtime_checkable
class BatchAugment(Protocol):
    """An augment with a batch form: ``batch(x (B, *shape)) -> (B, *shape)``, per-case random parameters."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...


def batched(augment: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``(B, *shape) -> (B, *shape)``: ``augment.batch`` when there is one, else ``augment`` per case."""
    if isinstance(augment, BatchAugment):
        return augment.batch
    return lambda x: torch.stack([augment(v) for v in x]) if len(x) else x.clone()
