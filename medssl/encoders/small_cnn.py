"""A small CNN for 28-64 px grey images (MedMNIST-sized): four conv blocks + global average pool."""

from __future__ import annotations

import torch
from torch import nn

from medssl.encoders.registry import EncoderExample, register_encoder


def _block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


@register_encoder("small_cnn", EncoderExample({"in_channels": 1}, (1, 28, 28), "imaging"))
class SmallCNN(nn.Module):
    """Conv(3x3)-BN-ReLU blocks with widths ``width * (1, 2, 4, 4)``, max-pooling after the first three.

    Input ``(B, in_channels, H, W)`` with ``H, W >= 8``; output ``(B, num_features)`` where
    ``num_features = 4 * width`` (128 by default).
    """

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        if in_channels < 1 or width < 1:
            raise ValueError(f"small_cnn needs in_channels >= 1 and width >= 1, got {in_channels}, {width}")
        widths = (width, 2 * width, 4 * width, 4 * width)
        self.features = nn.Sequential(
            _block(in_channels, widths[0], pool=True),
            _block(widths[0], widths[1], pool=True),
            _block(widths[1], widths[2], pool=True),
            _block(widths[2], widths[3], pool=False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.num_features: int = widths[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, num_features)``."""
        return self.features(x)
