"""Barlow Twins (Zbontar et al. 2021): redundancy reduction of the two views' cross-correlation.

Parts (lightly ``examples/pytorch/barlowtwins.py``): the encoder + ``BarlowTwinsProjectionHead``
(3-layer MLP with batch norm) give ``(B, projection_dim)`` per view; ``BarlowTwinsLoss`` batch-normalises
both, forms the ``(projection_dim, projection_dim)`` cross-correlation matrix C and returns
``sum_i (1 - C_ii)^2 + lambda_param * sum_{i != j} C_ij^2``. No negatives, no momentum network.
The paper's 8192-wide head is narrowed to 1024 by default (CPU-sized; set the dims to widen it).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from lightly.loss import BarlowTwinsLoss
from lightly.models.modules import BarlowTwinsProjectionHead
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method, require_sizes


@register_method("barlow_twins")
class BarlowTwins(SSLMethod):
    """Cross-correlation of the two views' projections driven to the identity matrix."""

    family: ClassVar[str] = "redundancy reduction"
    summary: ClassVar[str] = "the two views' embeddings correlate feature by feature, with decorrelated features"
    lightly_parts: ClassVar[str] = "BarlowTwinsLoss, BarlowTwinsProjectionHead"

    pairing: ClassVar[str] = "augment"

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 1024,
        hidden_dim: int = 1024,
        lambda_param: float = 5e-3,
    ) -> None:
        super().__init__(encoder)
        require_sizes("barlow_twins", projection_dim=projection_dim, hidden_dim=hidden_dim)
        if not lambda_param >= 0:
            raise ConfigError(f"barlow_twins method_options lambda_param={lambda_param!r}: must be >= 0 (default 0.005)")
        self.projection = BarlowTwinsProjectionHead(int(encoder.num_features), hidden_dim, projection_dim)
        self.criterion = BarlowTwinsLoss(lambda_param=lambda_param)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *input_shape)`` -> ``(B, projection_dim)``."""
        return self.projection(self.encoder(x))

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """BarlowTwinsLoss between the projections of ``view1`` and ``view2`` (needs B >= 2)."""
        return self.criterion(self.project(batch["view1"]), self.project(batch["view2"]))
