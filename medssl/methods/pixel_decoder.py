"""A light decoder from an encoder's embedding back to image pixels, and the image-encoder checks
shared by the image pretext methods (``simmim``, ``denoising_ae``, ``rotation``, ``jigsaw``).

The encoders give only an embedding ``(B, F)`` (no feature map), so the decoder is
``Linear(F -> D*4*4)`` -> two ``ConvTranspose2d`` (x2 each: 4 -> 8 -> 16 px) -> ``Conv2d(3x3) -> C``
on a fixed 16 x 16 grid, then bilinear interpolation to the batch's ``(H, W)``: one decoder serves
every image size the imaging domain uses (28, 32, 64, 224 px ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import ConfigError, DataError

GRID = 16  # side of the decoder's own output before it is resized to the input's H x W


def image_channels(method: str, encoder: nn.Module) -> int:
    """Input channels of an image encoder (its first ``Conv2d``); a ``ConfigError`` for any other."""
    first = next((m for m in encoder.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ConfigError(f"{method} needs an image encoder (small_cnn, resnet18, resnet50), got {type(encoder).__name__}")
    return int(first.in_channels)


def require_images(method: str, x: torch.Tensor) -> None:
    """Refuse anything but a batch of images ``(B, C, H, W)`` with one line."""
    if x.ndim != 4:
        raise DataError(f"{method} works on image batches (B, C, H, W), got shape {tuple(x.shape)}; use an imaging DATA_DIR")


class PixelDecoder(nn.Module):
    """``(B, F)`` embedding -> ``(B, channels, H, W)`` image (``H, W`` given at call time)."""

    def __init__(self, num_features: int, channels: int, dim: int = 64) -> None:
        super().__init__()
        half = max(dim // 2, 1)
        self.dim = dim
        self.fc = nn.Linear(num_features, dim * 4 * 4)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(dim, half, kernel_size=4, stride=2, padding=1),  # 4 -> 8
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(half, half, kernel_size=4, stride=2, padding=1),  # 8 -> 16
            nn.ReLU(inplace=True),
            nn.Conv2d(half, channels, kernel_size=3, padding=1),
        )

    def forward(self, z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``z (B, F)``, ``size = (H, W)`` -> ``(B, channels, H, W)``."""
        out = self.up(self.fc(z).view(z.shape[0], self.dim, 4, 4))  # (B, C, 16, 16)
        if tuple(size) != (GRID, GRID):
            out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return out
