"""ResNet-18/50 (torchvision, randomly initialised; weights are never downloaded) for grey images.

The stem takes ``in_channels`` (1 for X-ray/CT/MR slices); ``small_input=True`` swaps the 7x7/2
convolution + max-pool for a 3x3/1 convolution (the CIFAR stem), better for 28-64 px inputs.
The classifier ``fc`` is removed: the output is the pooled feature vector.
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.encoders.registry import EncoderExample, register_encoder


class ImageResNet(nn.Module):
    """``(B, in_channels, H, W)`` -> ``(B, num_features)``; 512 features (ResNet-18) or 2048 (ResNet-50).

    ``arch`` names the torchvision builder (``"resnet18"``, ``"resnet50"``).
    """

    def __init__(self, arch: str, in_channels: int = 1, small_input: bool = False) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        from torchvision import models  # imported here: torchvision costs ~1 s, and only ResNets need it

        net = getattr(models, arch)(weights=None)
        if small_input:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        else:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.num_features: int = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, num_features)``."""
        return self.net(x)


@register_encoder("resnet18", EncoderExample({"in_channels": 1}, (1, 32, 32), "imaging"))
def build_resnet18(in_channels: int = 1, small_input: bool = False) -> ImageResNet:
    """ResNet-18 with a ``in_channels`` stem; ``num_features`` = 512."""
    return ImageResNet("resnet18", in_channels=in_channels, small_input=small_input)


@register_encoder("resnet50", EncoderExample({"in_channels": 1}, (1, 32, 32), "imaging"))
def build_resnet50(in_channels: int = 1, small_input: bool = False) -> ImageResNet:
    """ResNet-50 with a ``in_channels`` stem; ``num_features`` = 2048."""
    return ImageResNet("resnet50", in_channels=in_channels, small_input=small_input)
