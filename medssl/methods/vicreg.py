"""VICReg (Bardes et al. 2022): variance-invariance-covariance regularisation of two views' embeddings.

Parts (lightly ``examples/pytorch/vicreg.py``): the encoder + ``VICRegProjectionHead`` (MLP with
batch norm) give ``(B, projection_dim)`` per view; ``VICRegLoss`` returns
``lambda_param * MSE(z1, z2) + mu_param * (var(z1) + var(z2)) / 2 + nu_param * (cov(z1) + cov(z2))``
where var is the hinge ``mean(relu(1 - std))`` over features and cov the sum of squared off-diagonal
covariances / projection_dim. No negatives, no momentum network. The paper's 8192-wide head is
narrowed to 1024 by default (CPU-sized).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method, require_sizes


@register_method("vicreg")
class VICReg(SSLMethod):
    """Invariance (MSE) + variance hinge + covariance penalty over the two views' projections."""

    family: ClassVar[str] = "redundancy reduction"
    summary: ClassVar[str] = "the two views' embeddings match while every feature keeps variance and features decorrelate"
    lightly_parts: ClassVar[str] = "VICRegLoss, VICRegProjectionHead"

    pairing: ClassVar[str] = "augment"

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 1024,
        hidden_dim: int = 1024,
        num_layers: int = 3,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
    ) -> None:
        super().__init__(encoder)
        require_sizes("vicreg", projection_dim=projection_dim, hidden_dim=hidden_dim, num_layers=num_layers)
        if num_layers < 2:
            raise ConfigError(f"vicreg method_options num_layers={num_layers}: the head has at least 2 layers (default 3)")
        for name, value in (("lambda_param", lambda_param), ("mu_param", mu_param), ("nu_param", nu_param)):
            if not value >= 0:
                raise ConfigError(f"vicreg method_options {name}={value!r}: must be >= 0 (defaults 25, 25, 1)")
        self.projection = VICRegProjectionHead(int(encoder.num_features), hidden_dim, projection_dim, num_layers)
        self.criterion = VICRegLoss(lambda_param=lambda_param, mu_param=mu_param, nu_param=nu_param)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *input_shape)`` -> ``(B, projection_dim)``."""
        return self.projection(self.encoder(x))

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """VICRegLoss between the projections of ``view1`` and ``view2`` (needs B >= 2)."""
        return self.criterion(self.project(batch["view1"]), self.project(batch["view2"]))
