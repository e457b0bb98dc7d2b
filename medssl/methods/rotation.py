"""Rotation prediction (Gidaris et al. 2018): which of 0/90/180/270 degrees was an image turned by?

Each image of ``view1`` (B, C, H, W), H == W, gets a random label ``r`` in {0, 1, 2, 3} and is
turned by ``r`` quarter turns (``torch.rot90(x, r, dims=(1, 2))`` per image, counter-clockwise);
a linear head on the embedding ``(B, F) -> (B, 4)`` classifies ``r`` with cross-entropy. ``view2``
is not used (``view1`` is already the augmented case). Images only.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import DataError
from medssl.methods.base import SSLMethod, register_method
from medssl.methods.pixel_decoder import image_channels, require_images


def rotate_batch(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``x (B, C, S, S)``, ``labels (B,)`` in 0..3 -> image ``b`` turned ``labels[b]`` quarter turns."""
    out = torch.empty_like(x)
    for k in range(4):
        rows = (labels == k).nonzero(as_tuple=True)[0]
        if len(rows):
            out[rows] = torch.rot90(x[rows], k, dims=(2, 3))
    return out


@register_method("rotation")
class RotationPrediction(SSLMethod):
    """``training_loss``: 4-way cross-entropy of the rotation applied to each ``view1`` image."""

    pairing: ClassVar[str] = "augment"
    family: ClassVar[str] = "pretext task"
    summary: ClassVar[str] = "predicts which of four quarter turns an image was rotated by"
    lightly_parts: ClassVar[str] = ""
    supported_domains: ClassVar[tuple[str, ...]] = ("imaging",)

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__(encoder)
        image_channels("rotation", encoder)  # a ConfigError for a non-image encoder
        self.head = nn.Linear(int(encoder.num_features), 4)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy on ``batch["view1"]`` ``(B, C, S, S)`` turned by random quarter turns."""
        x = batch["view1"]
        require_images("rotation", x)
        if x.shape[-1] != x.shape[-2]:
            raise DataError(f"rotation needs square images, got {tuple(x.shape[-2:])}; resize them to a square")
        labels = torch.randint(0, 4, (x.shape[0],), device=x.device)
        return F.cross_entropy(self.head(self.encoder(rotate_batch(x, labels))), labels)
