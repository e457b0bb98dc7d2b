"""SCARF (Bahri et al. 2022): contrastive learning on table rows with random feature corruption.

The anchor is ``view1`` as it is; the positive is ``view2`` with a random ``corruption_rate``
share of its features replaced by the same feature of random other rows in the batch (the
batch's empirical marginal distribution; ``medssl.transforms.tabular.corrupt_from_batch``).
Both go through the encoder and lightly's ``SimCLRProjectionHead``; the loss is lightly's
``NTXentLoss`` (the other rows of the batch are the negatives). Defaults follow the paper
(corruption 0.6, temperature 1.0).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method, require_sizes
from medssl.transforms.tabular import corrupt_from_batch


def row_columns(encoder: nn.Module) -> int | None:
    """How many leading input entries are the row's own features (slot 0); ``None`` = all."""
    if getattr(encoder, "history", 0) and hasattr(encoder, "n_numeric"):
        return int(encoder.n_numeric) + len(encoder.cardinalities)
    return None


@register_method("scarf")
class SCARF(SSLMethod):
    """``training_loss``: NT-Xent between ``encoder(view1)`` and ``encoder(corrupt(view2))`` projections."""

    family: ClassVar[str] = "contrastive"
    summary: ClassVar[str] = "a row and a copy with random features replaced from their marginals agree (tabular)"
    lightly_parts: ClassVar[str] = "NTXentLoss, SimCLRProjectionHead"

    pairing: ClassVar[str] = "augment"
    supported_domains: ClassVar[tuple[str, ...]] = ("transactions",)

    def __init__(self, encoder: nn.Module, corruption_rate: float = 0.6, temperature: float = 1.0,
                 projection_dim: int = 128, hidden_dim: int | None = None) -> None:
        super().__init__(encoder)
        if not 0.0 < corruption_rate < 1.0:
            raise ConfigError(f"scarf corruption_rate must be in (0, 1), got {corruption_rate}")
        require_sizes("scarf", projection_dim=projection_dim, hidden_dim=hidden_dim)
        n = int(encoder.num_features)
        self.corruption_rate = corruption_rate
        self.columns = row_columns(encoder)
        self.projection = SimCLRProjectionHead(n, hidden_dim or n, projection_dim)
        self.criterion = NTXentLoss(temperature=temperature)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, W)`` -> ``(B, projection_dim)``."""
        return self.projection(self.encoder(x))

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar NT-Xent loss; ``view1``/``view2`` are ``(B, W)``."""
        corrupted, _ = corrupt_from_batch(batch["view2"], self.corruption_rate, self.columns)
        return self.criterion(self.project(batch["view1"]), self.project(corrupted))
