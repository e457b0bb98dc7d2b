"""TS2Vec (Yue et al. 2022): hierarchical contrastive learning of per-time-step representations.

From one series ``view1`` (B, C, T) two overlapping random crops are drawn, exactly as in the
paper: crop 1 = ``[a1, b)`` and crop 2 = ``[a, b2)`` with ``a1 <= a < b <= b2``, each shifted by
a random per-row offset. Random time steps of each crop are masked (set to 0: in EHR layouts
values *and* masks, i.e. "not observed"; the paper masks after the input projection, here the
mask is applied to the input so that any encoder can be used). The encoder's
``forward_sequence`` gives ``(B, L, F)`` per crop; on the overlap ``[a, b)`` the
**instance-level** loss (the same step of the same series is the positive, the same step of
other series the negatives) and the **temporal** loss (the same step in the other crop is the
positive, other steps of the same series the negatives) are computed, then both representations
are max-pooled by 2 along time and the losses repeated until one step is left.

Needs an encoder with ``forward_sequence(x) -> (B, T, F)`` (``requires = "sequence"``):
``ts2vec_tcn`` and ``gru``. ``view2`` and ``patient`` are not used (pairing ``"augment"``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method


def _pair_contrast(z: torch.Tensor, n: int) -> torch.Tensor:
    """``z`` (G, 2n, F): row i and row i+n are positives, every other row a negative (dot products).

    Returns the mean cross-entropy over the 2n anchors of every group.
    """
    sim = torch.matmul(z, z.transpose(1, 2))  # (G, 2n, 2n)
    logits = torch.tril(sim, diagonal=-1)[:, :, :-1] + torch.triu(sim, diagonal=1)[:, :, 1:]  # drop self
    logits = -F.log_softmax(logits, dim=-1)
    i = torch.arange(n, device=z.device)
    return (logits[:, i, n + i - 1].mean() + logits[:, n + i, i].mean()) / 2


def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """``z1, z2`` (B, T, F): at every step, series b's two crops are positives, other series negatives."""
    if z1.shape[0] == 1:
        return z1.new_tensor(0.0)
    return _pair_contrast(torch.cat([z1, z2], dim=0).transpose(0, 1), z1.shape[0])


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """``z1, z2`` (B, T, F): step t of both crops are positives, other steps of the series negatives."""
    if z1.shape[1] == 1:
        return z1.new_tensor(0.0)
    return _pair_contrast(torch.cat([z1, z2], dim=1), z1.shape[1])


def hierarchical_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5, temporal_unit: int = 0) -> torch.Tensor:
    """TS2Vec's loss over ``z1, z2`` (B, T, F), averaged over the max-pooling hierarchy."""
    loss, depth = z1.new_tensor(0.0), 0
    while z1.shape[1] > 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        if depth >= temporal_unit and alpha != 1:
            loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        depth += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
    if z1.shape[1] == 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        depth += 1
    return loss / depth


def take_per_row(x: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """``x[b, :, starts[b] : starts[b] + length]`` for every row of ``x`` (B, C, T) -> (B, C, length)."""
    index = starts[:, None] + torch.arange(length, device=x.device)[None, :]
    return x.gather(2, index[:, None, :].expand(-1, x.shape[1], -1))


@register_method("ts2vec")
class TS2Vec(SSLMethod):
    """Hierarchical contrastive learning over two overlapping crops of ``view1`` (see module doc)."""

    family: ClassVar[str] = "contrastive"
    summary: ClassVar[str] = "time-step representations agree across overlapping crops, contrasted over time and instances (series)"
    lightly_parts: ClassVar[str] = ""

    pairing: ClassVar[str] = "augment"
    requires: ClassVar[str] = "sequence"  # the encoder must offer forward_sequence(x) -> (B, T, F)
    supported_domains: ClassVar[tuple[str, ...]] = ("ehr", "signals")

    def __init__(self, encoder: nn.Module, alpha: float = 0.5, temporal_unit: int = 0, mask_prob: float = 0.5) -> None:
        super().__init__(encoder)
        if not callable(getattr(encoder, "forward_sequence", None)):
            raise ConfigError(
                f"ts2vec needs an encoder with per-time-step outputs (forward_sequence); "
                f"{type(encoder).__name__} has none. Use encoder ts2vec_tcn or gru"
            )
        if not 0 <= alpha <= 1 or not 0 <= mask_prob < 1 or temporal_unit < 0:
            raise ConfigError(f"ts2vec needs 0 <= alpha <= 1, 0 <= mask_prob < 1, temporal_unit >= 0; "
                              f"got alpha={alpha}, mask_prob={mask_prob}, temporal_unit={temporal_unit}")
        self.alpha, self.temporal_unit, self.mask_prob = alpha, temporal_unit, mask_prob

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask_prob > 0:
            keep = torch.rand(x.shape[0], 1, x.shape[2], device=x.device) >= self.mask_prob
            x = x * keep.to(x.dtype)
        return self.encoder.forward_sequence(x)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hierarchical contrastive loss between two overlapping random crops of ``view1`` (B, C, T)."""
        x = batch["view1"]
        b, t = x.shape[0], x.shape[-1]
        min_len = min(2 ** (self.temporal_unit + 1), t)
        crop_len = int(torch.randint(min_len, t + 1, (1,)))
        left = int(torch.randint(0, t - crop_len + 1, (1,)))
        right = left + crop_len
        ext_left = int(torch.randint(0, left + 1, (1,)))
        ext_right = int(torch.randint(right, t + 1, (1,)))
        offset = torch.randint(-ext_left, t - ext_right + 1, (b,), device=x.device)
        out1 = self._encode(take_per_row(x, offset + ext_left, right - ext_left))[:, -crop_len:]
        out2 = self._encode(take_per_row(x, offset + left, ext_right - left))[:, :crop_len]
        return hierarchical_contrastive_loss(out1, out2, self.alpha, self.temporal_unit)
