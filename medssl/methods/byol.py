"""BYOL (Grill et al. 2020): an online network predicts a momentum (EMA) target network's projection."""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from medssl.methods.base import SSLMethod, register_method, require_sizes


@register_method("byol")
class BYOL(SSLMethod):
    """Symmetric negative-cosine loss between online predictions and target projections.

    The target (``target_encoder``, ``target_projection``) is an EMA of the online network whose
    momentum follows a cosine schedule from ``momentum`` to 1 over training (per optimizer step).
    """

    family: ClassVar[str] = "non-contrastive"
    summary: ClassVar[str] = "an online network predicts a momentum (EMA) target network's projection of another view"
    lightly_parts: ClassVar[str] = "NegativeCosineSimilarity, BYOLProjectionHead, BYOLPredictionHead, update_momentum, cosine_schedule"

    pairing: ClassVar[str] = "augment"

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int = 1024,
        momentum: float = 0.99,
    ) -> None:
        super().__init__(encoder)
        require_sizes("byol", projection_dim=projection_dim, hidden_dim=hidden_dim)
        n = int(encoder.num_features)
        self.projection = BYOLProjectionHead(n, hidden_dim, projection_dim)
        self.prediction = BYOLPredictionHead(projection_dim, hidden_dim, projection_dim)
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projection = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.target_encoder)
        deactivate_requires_grad(self.target_projection)
        self.momentum = momentum
        self.criterion = NegativeCosineSimilarity()

    def _online(self, x: torch.Tensor) -> torch.Tensor:
        return self.prediction(self.projection(self.encoder(x)))

    @torch.no_grad()
    def _target(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projection(self.target_encoder(x))

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``0.5 * (-cos(p1, t2) - cos(p2, t1))``: in ``[-1, 1]``, -1 when predictions match."""
        v1, v2 = batch["view1"], batch["view2"]
        p1, p2 = self._online(v1), self._online(v2)
        t1, t2 = self._target(v1), self._target(v2)
        return 0.5 * (self.criterion(p1, t2) + self.criterion(p2, t1))

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """EMA update of the target with the scheduled momentum."""
        m = cosine_schedule(step, max(total_steps, 1), self.momentum, 1.0)
        update_momentum(self.encoder, self.target_encoder, m=m)
        update_momentum(self.projection, self.target_projection, m=m)
