"""DINO (Caron et al. 2021): self-distillation from a momentum teacher with centring and sharpening.

This version uses two global views (``view1``, ``view2``) and no local crops: each view's student
output is trained to match the teacher's output on the other view.
"""

from __future__ import annotations

import copy
import warnings
from typing import ClassVar

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from medssl.methods.base import SSLMethod, register_method, require_sizes


def _dino_head(n: int, hidden_dim: int, bottleneck_dim: int, output_dim: int) -> DINOProjectionHead:
    with warnings.catch_warnings():  # lightly's head still uses the old nn.utils.weight_norm
        warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated", category=FutureWarning)
        return DINOProjectionHead(n, hidden_dim, bottleneck_dim, output_dim, batch_norm=True)


@register_method("dino")
class DINO(SSLMethod):
    """Student (encoder + DINO head) vs an EMA teacher; the head outputs ``(B, output_dim)`` logits."""

    family: ClassVar[str] = "non-contrastive"
    summary: ClassVar[str] = "self-distillation: a student matches a momentum teacher's centred, sharpened output distribution"
    lightly_parts: ClassVar[str] = "DINOLoss, DINOProjectionHead, update_momentum, cosine_schedule"

    pairing: ClassVar[str] = "augment"

    def __init__(
        self,
        encoder: nn.Module,
        output_dim: int = 1024,
        hidden_dim: int = 512,
        bottleneck_dim: int = 128,
        teacher_temp: float = 0.04,
        student_temp: float = 0.1,
        momentum: float = 0.996,
    ) -> None:
        super().__init__(encoder)
        require_sizes("dino", output_dim=output_dim, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim)
        n = int(encoder.num_features)
        dims = (n, hidden_dim, bottleneck_dim, output_dim)
        self.head = _dino_head(*dims)
        self.teacher_encoder = copy.deepcopy(encoder)
        self.teacher_head = _dino_head(*dims)  # weight-normed heads cannot be deep-copied
        self.teacher_head.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.teacher_encoder)
        deactivate_requires_grad(self.teacher_head)
        self.momentum = momentum
        self.criterion = DINOLoss(
            output_dim=output_dim,
            warmup_teacher_temp=teacher_temp,
            teacher_temp=teacher_temp,
            student_temp=student_temp,
        )

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of student(view_a) against the centred, sharpened teacher(view_b), a != b."""
        views = [batch["view1"], batch["view2"]]
        student = [self.head(self.encoder(v)) for v in views]
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_encoder(v)) for v in views]
        return self.criterion(teacher, student)

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """EMA update of the teacher with the scheduled momentum."""
        m = cosine_schedule(step, max(total_steps, 1), self.momentum, 1.0)
        update_momentum(self.encoder, self.teacher_encoder, m=m)
        update_momentum(self.head, self.teacher_head, m=m)
