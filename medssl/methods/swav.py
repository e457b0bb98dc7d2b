"""SwaV (Caron et al. 2020): swapped prediction of online cluster assignments (Sinkhorn) over prototypes.

Parts (lightly ``examples/pytorch/swav.py``): the encoder + ``SwaVProjectionHead`` give an
L2-normalised ``(B, projection_dim)`` embedding per view; ``SwaVPrototypes`` scores it against
``n_prototypes`` unit-norm prototypes (renormalised before every step, as in the paper); ``SwaVLoss``
computes each view's soft codes with Sinkhorn-Knopp (equal use of the prototypes within the batch)
and trains the other view to predict them. Two views (``view1``, ``view2``), no multi-crop and no
feature queue: the default ``n_prototypes`` (128) is smaller than the paper's 3000 so that batches
of a few dozen cases still spread over the prototypes. ``freeze_prototypes_steps`` keeps the
prototypes fixed for the first optimizer steps (the paper freezes them for the first epoch; 0 = never).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method, require_sizes


@register_method("swav")
class SwaV(SSLMethod):
    """Prototype scores ``(B, n_prototypes)`` per view; loss = swapped cross-entropy vs Sinkhorn codes."""

    family: ClassVar[str] = "clustering"
    summary: ClassVar[str] = "each view predicts the other's balanced (Sinkhorn) assignment to learned prototypes"
    lightly_parts: ClassVar[str] = "SwaVLoss, SwaVProjectionHead, SwaVPrototypes"

    pairing: ClassVar[str] = "augment"

    def __init__(
        self,
        encoder: nn.Module,
        n_prototypes: int = 128,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        sinkhorn_epsilon: float = 0.05,
        freeze_prototypes_steps: int = 0,
    ) -> None:
        super().__init__(encoder)
        require_sizes("swav", n_prototypes=n_prototypes, projection_dim=projection_dim, hidden_dim=hidden_dim,
                      sinkhorn_iterations=sinkhorn_iterations)
        for name, value in (("temperature", temperature), ("sinkhorn_epsilon", sinkhorn_epsilon)):
            if not value > 0:
                raise ConfigError(f"swav method_options {name}={value!r}: must be > 0 (defaults 0.1 and 0.05)")
        if isinstance(freeze_prototypes_steps, bool) or not isinstance(freeze_prototypes_steps, int) \
                or freeze_prototypes_steps < 0:
            raise ConfigError(f"swav method_options freeze_prototypes_steps={freeze_prototypes_steps!r}: "
                              f"must be a whole number >= 0 (0 = train the prototypes from the first step)")
        n = int(encoder.num_features)
        self.projection = SwaVProjectionHead(n, hidden_dim or n, projection_dim)
        self.prototypes = SwaVPrototypes(projection_dim, n_prototypes, freeze_prototypes_steps)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))  # saved in last.ckpt: resume keeps it
        self.criterion = SwaVLoss(temperature=temperature, sinkhorn_iterations=sinkhorn_iterations,
                                  sinkhorn_epsilon=sinkhorn_epsilon)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *input_shape)`` -> ``(B, n_prototypes)`` cosine similarities to the prototypes."""
        z = nn.functional.normalize(self.projection(self.encoder(x)), dim=1, p=2)
        return self.prototypes(z, step=int(self.steps_done))

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Renormalise the prototypes, then SwaVLoss over the two views (both high resolution); a scalar."""
        with torch.no_grad():
            self.prototypes.normalize()
        loss = self.criterion([self.scores(batch["view1"]), self.scores(batch["view2"])], [])
        return loss.reshape(())  # lightly returns shape (1,)

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """Count optimizer steps (``step`` = steps done) for ``freeze_prototypes_steps``."""
        self.steps_done.fill_(step)
