"""VIME self-supervised part (Yoon et al. 2020): masked-feature reconstruction + mask estimation.

A random ``mask_rate`` share of a row's features is replaced by values drawn from the batch's
empirical marginals (``corrupt_from_batch``). From the embedding of the corrupted row, two
heads predict (1) which features were replaced (binary cross-entropy) and (2) the original
values: mean squared error on the numeric columns, cross-entropy per categorical column.
``loss = mask_loss + alpha * reconstruction_loss``. Needs a tabular encoder (one that exposes
``n_numeric`` and ``cardinalities``: ``tabular_mlp``, ``ft_transformer``, ``entity_sequence``);
only ``view1`` is used, and only its slot 0 (the row itself) is corrupted and reconstructed.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from lightly.models.modules.heads import ProjectionHead
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method, require_sizes
from medssl.transforms.tabular import corrupt_from_batch


def _head(n_in: int, hidden: int, n_out: int) -> ProjectionHead:
    return ProjectionHead([(n_in, hidden, nn.BatchNorm1d(hidden), nn.ReLU()), (hidden, n_out, None, None)])


@register_method("vime")
class VIME(SSLMethod):
    """``training_loss``: mask estimation BCE + ``alpha`` x feature reconstruction loss."""

    family: ClassVar[str] = "masked modelling"
    summary: ClassVar[str] = "from a row with features replaced, predict which were replaced and their original values (tabular)"
    lightly_parts: ClassVar[str] = "ProjectionHead"

    pairing: ClassVar[str] = "augment"
    supported_domains: ClassVar[tuple[str, ...]] = ("transactions",)

    def __init__(self, encoder: nn.Module, mask_rate: float = 0.3, alpha: float = 2.0, hidden_dim: int | None = None) -> None:
        super().__init__(encoder)
        if not hasattr(encoder, "n_numeric") or not hasattr(encoder, "cardinalities"):
            raise ConfigError("vime needs a tabular encoder (tabular_mlp, ft_transformer or entity_sequence)")
        if not 0.0 < mask_rate < 1.0:
            raise ConfigError(f"vime mask_rate must be in (0, 1), got {mask_rate}")
        require_sizes("vime", hidden_dim=hidden_dim)
        self.mask_rate, self.alpha = mask_rate, alpha
        self.n_numeric = int(encoder.n_numeric)
        self.cardinalities = [int(c) for c in encoder.cardinalities]
        self.width = self.n_numeric + len(self.cardinalities)
        n, hidden = int(encoder.num_features), hidden_dim or int(encoder.num_features)
        self.mask_head = _head(n, hidden, self.width)
        self.numeric_head = _head(n, hidden, self.n_numeric) if self.n_numeric else None
        self.category_head = _head(n, hidden, sum(self.cardinalities)) if self.cardinalities else None

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (B, W)`` -> ``{"mask": scalar, "reconstruction": scalar}``."""
        corrupted, mask = corrupt_from_batch(x, self.mask_rate, self.width)
        z = self.encoder(corrupted)
        mask_loss = F.binary_cross_entropy_with_logits(self.mask_head(z), mask[:, : self.width].float())
        recon = z.new_zeros(())
        row = x[:, : self.width]
        if self.numeric_head is not None:
            recon = recon + F.mse_loss(self.numeric_head(z), row[:, : self.n_numeric])
        if self.category_head is not None:
            logits = self.category_head(z).split(self.cardinalities, dim=1)
            targets = row[:, self.n_numeric:].round().long()
            for j, (lg, card) in enumerate(zip(logits, self.cardinalities)):
                recon = recon + F.cross_entropy(lg, targets[:, j].clamp(0, card - 1)) / len(self.cardinalities)
        return {"mask": mask_loss, "reconstruction": recon}

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar loss on ``batch["view1"]`` ``(B, W)``."""
        parts = self.losses(batch["view1"])
        return parts["mask"] + self.alpha * parts["reconstruction"]
