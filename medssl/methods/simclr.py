"""SimCLR (Chen et al. 2020): encoder + MLP projection + NT-Xent over two augmented views."""

from __future__ import annotations

from typing import ClassVar

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from medssl.methods.base import SSLMethod, register_method, require_sizes


@register_method("simclr")
class SimCLR(SSLMethod):
    """Two augmentations of one case are the positive pair; the rest of the batch are negatives.

    ``hidden_dim`` defaults to the encoder's ``num_features``; projections are ``(B, projection_dim)``.
    """

    family: ClassVar[str] = "contrastive"
    summary: ClassVar[str] = "two augmentations of one case agree, other cases of the batch are negatives (NT-Xent)"
    lightly_parts: ClassVar[str] = "NTXentLoss, SimCLRProjectionHead"

    pairing: ClassVar[str] = "augment"

    def __init__(
        self,
        encoder: nn.Module,
        temperature: float = 0.1,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
    ) -> None:
        super().__init__(encoder)
        require_sizes(type(self).__name__.lower(), projection_dim=projection_dim, hidden_dim=hidden_dim)
        n = int(encoder.num_features)
        self.projection = SimCLRProjectionHead(n, hidden_dim or n, projection_dim)
        self.criterion = NTXentLoss(temperature=temperature)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *input_shape)`` -> ``(B, projection_dim)``."""
        return self.projection(self.encoder(x))

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """NT-Xent between the projections of ``view1`` and ``view2``."""
        return self.criterion(self.project(batch["view1"]), self.project(batch["view2"]))
