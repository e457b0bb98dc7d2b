"""SimMIM (Xie et al. 2022) for CNN encoders: masked image modelling with a light pixel decoder.

``view1`` (B, C, H, W) is cut into ``patch_size`` x ``patch_size`` patches (a ceil grid; the last
row/column of patches may be cropped); a random ``mask_ratio`` share of them (lightly's
``random_token_mask``, per image) is replaced by zeros (``fill="zero"``) or by the image's mean
(``fill="mean"``): a CNN takes pixels, so there is no learned mask token. The masked image is
encoded to ``(B, F)``, the ``PixelDecoder`` paints it back to ``(B, C, H, W)`` and the loss is the
L1 error **on the masked pixels only** (SimMIM): ``sum(|pred - x| * m) / (sum(m) * C)`` with
``m`` the ``(B, 1, H, W)`` mask. Only ``view1`` is used (it is the augmented case; the target is
that same view). Images only.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from lightly.models.utils import random_token_mask
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method, require_sizes
from medssl.methods.pixel_decoder import PixelDecoder, image_channels, require_images


def patch_mask(batch: int, size: tuple[int, int], patch_size: int, mask_ratio: float,
               device: torch.device | None = None) -> torch.Tensor:
    """A random patch mask ``(batch, 1, H, W)`` of 0./1. (1 = masked): ``int(n * mask_ratio)``
    rounded up to at least one of the ``n = ceil(H/p) * ceil(W/p)`` patches of each image."""
    gh, gw = math.ceil(size[0] / patch_size), math.ceil(size[1] / patch_size)
    n = gh * gw
    ratio = max(mask_ratio, 1.0 / n)  # lightly keeps int(n * (1 - ratio)): at least one patch masked
    _, idx_mask = random_token_mask((batch, n), mask_ratio=ratio, mask_class_token=True, device=device)
    grid = torch.zeros(batch, n, device=device)
    grid.scatter_(1, idx_mask, 1.0)
    grid = grid.view(batch, 1, gh, gw)
    full = grid.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)
    return full[:, :, : size[0], : size[1]]


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SimMIM's loss: ``pred, target (B, C, H, W)``, ``mask (B, 1, H, W)`` -> mean |error| over the
    masked pixels and channels (scalar)."""
    per_pixel = (pred - target).abs() * mask
    return per_pixel.sum() / (mask.sum() * pred.shape[1]).clamp_min(1e-8)


@register_method("simmim")
class SimMIM(SSLMethod):
    """``training_loss``: L1 on the masked pixels of ``view1`` after encoding the masked image."""

    pairing: ClassVar[str] = "augment"
    family: ClassVar[str] = "masked modelling"
    summary: ClassVar[str] = "paints back randomly masked image patches from the embedding of the rest"
    lightly_parts: ClassVar[str] = "lightly.models.utils.random_token_mask"
    supported_domains: ClassVar[tuple[str, ...]] = ("imaging",)

    def __init__(self, encoder: nn.Module, mask_ratio: float = 0.6, patch_size: int = 4,
                 fill: str = "zero", decoder_dim: int = 64) -> None:
        super().__init__(encoder)
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"simmim mask_ratio must be in (0, 1), got {mask_ratio}")
        if fill not in ("zero", "mean"):
            raise ConfigError(f"simmim fill must be 'zero' or 'mean', got {fill!r}")
        require_sizes("simmim", patch_size=patch_size, decoder_dim=decoder_dim)
        self.mask_ratio, self.patch_size, self.fill = mask_ratio, patch_size, fill
        self.decoder = PixelDecoder(int(encoder.num_features), image_channels("simmim", encoder), decoder_dim)

    def mask_image(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)`` with the pixels where ``mask (B, 1, H, W)`` is 1 replaced by the fill."""
        fill = x.mean(dim=(1, 2, 3), keepdim=True) if self.fill == "mean" else torch.zeros_like(x[:, :1, :1, :1])
        return x * (1 - mask) + fill * mask

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Masked-pixel L1 on ``batch["view1"]`` ``(B, C, H, W)``; ``view2`` is not used."""
        x = batch["view1"]
        require_images("simmim", x)
        h, w = x.shape[-2:]
        mask = patch_mask(x.shape[0], (h, w), self.patch_size, self.mask_ratio, x.device).to(x.dtype)
        pred = self.decoder(self.encoder(self.mask_image(x, mask)), (h, w))
        return masked_l1(pred, x, mask)
