"""MoCo v2 (He et al. 2020; Chen et al. 2020): a query encoder against a momentum key encoder and a queue.

Parts (lightly ``examples/pytorch/moco.py``): the encoder + ``MoCoProjectionHead`` (2-layer MLP)
give queries from ``view1``; an EMA copy of both (the key network, momentum following lightly's
``cosine_schedule`` from ``momentum`` to 1 over training) gives keys from ``view2``.
``NTXentLoss(memory_bank_size=(queue_size, projection_dim))`` contrasts each query with its key
(positive) and the queue of keys from earlier batches (negatives), then enqueues this batch's keys.
The queue is lightly's memory bank: it starts as random unit vectors and is not saved in
checkpoints (a resumed run refills it within ``queue_size / batch_size`` steps). The logged loss
therefore *rises* over those first steps (random vectors are easy negatives; chance level is
``log(queue_size + 1)``) and falls after the fill. Keep ``queue_size`` below an epoch of cases
(``n_cases``): a larger queue holds earlier keys of the query's own case as negatives.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method, require_sizes


@register_method("moco")
class MoCo(SSLMethod):
    """Query ``(B, projection_dim)`` from ``view1`` vs key from ``view2`` and ``queue_size`` queued keys."""

    family: ClassVar[str] = "contrastive"
    summary: ClassVar[str] = "a case's query matches its momentum-encoded key against a queue of earlier keys (InfoNCE)"
    lightly_parts: ClassVar[str] = "NTXentLoss(memory_bank_size), MoCoProjectionHead, update_momentum, cosine_schedule"

    pairing: ClassVar[str] = "augment"

    def __init__(
        self,
        encoder: nn.Module,
        temperature: float = 0.2,
        queue_size: int = 4096,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
        momentum: float = 0.99,
    ) -> None:
        super().__init__(encoder)
        require_sizes("moco", projection_dim=projection_dim, hidden_dim=hidden_dim)
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 0:
            raise ConfigError(f"moco method_options queue_size={queue_size!r}: must be a whole number >= 0 "
                              f"(0 = no queue, negatives from the batch only)")
        if not temperature > 0:
            raise ConfigError(f"moco method_options temperature={temperature!r}: must be > 0 (MoCo v2 uses 0.2)")
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"moco method_options momentum={momentum!r}: must be between 0 and 1 (e.g. 0.99)")
        n = int(encoder.num_features)
        self.projection = MoCoProjectionHead(n, hidden_dim or n, projection_dim)
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projection = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.key_encoder)
        deactivate_requires_grad(self.key_projection)
        self.momentum = momentum
        bank = (queue_size, projection_dim) if queue_size else 0
        self.criterion = NTXentLoss(temperature=temperature, memory_bank_size=bank)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *input_shape)`` -> ``(B, projection_dim)`` through the trained encoder and head."""
        return self.projection(self.encoder(x))

    @torch.no_grad()
    def key(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *input_shape)`` -> ``(B, projection_dim)`` through the momentum copies (no gradient)."""
        return self.key_projection(self.key_encoder(x))

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """InfoNCE of query(view1) against key(view2) and the queue; enqueues the keys when training."""
        return self.criterion(self.query(batch["view1"]), self.key(batch["view2"]))

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """EMA update of the key network with the scheduled momentum."""
        m = cosine_schedule(step, max(total_steps, 1), self.momentum, 1.0)
        update_momentum(self.encoder, self.key_encoder, m=m)
        update_momentum(self.projection, self.key_projection, m=m)
