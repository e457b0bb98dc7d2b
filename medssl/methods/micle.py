"""MICLe (Azizi et al., ICCV 2021): multi-instance contrastive learning.

A positive pair is two augmented crops of two *different* images of the same patient (the pair
dataset draws them with ``pairing = "patient"``; a patient with one image falls back to two
augmentations of it). In-batch negatives exclude every other image of the same patient, so
there are no false negatives: :func:`patient_masked_nt_xent`.

Options beyond the paper (``method_options``), for data where one patient has many cases of
different kinds (heart beats of one record: mostly normal, a few ectopic):

- ``partner``: ``"random"`` (the paper: any other case of the patient) or ``"nearest"`` (one of the
  ``partner_k`` cases of the same patient closest in input space; see ``medssl.data.pairs``). A
  random partner pulls a patient's rare beats onto its common ones and so teaches "which patient",
  not "which kind of beat"; the nearest partner is a real, same-patient variation of the same kind.
- ``partner_prob``: probability of the same-patient partner; otherwise two augmentations of the case.
- ``mask_patient_negatives`` (default True, the paper): drop other cases of the anchor's patient from
  the negatives. With ``partner="nearest"`` they are no longer positives by construction; keeping
  them as negatives (False) lets the loss separate different kinds of case within a patient.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medssl.methods.base import register_method
from medssl.methods.simclr import SimCLR


def patient_masked_nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, patient: torch.Tensor, temperature: float, reduction: str = "mean"
) -> torch.Tensor:
    """NT-Xent over ``2B`` projections where same-patient pairs are not used as negatives.

    ``z1``, ``z2``: ``(B, D)`` projections of the two views (row ``i`` of each is a positive pair);
    ``patient``: ``(B,)`` patient index of each row. Each of the ``2B`` anchors is scored against
    its positive and against every view of a *different* patient; itself and other views of its
    own patient are removed from the softmax denominator. With all patients distinct this equals
    ``lightly.loss.NTXentLoss(temperature)(z1, z2)``. Returns the mean over the 2B anchors, or with
    ``reduction="none"`` the ``(2B,)`` per-anchor losses (rows ``0..B-1``: anchors from ``z1``).
    """
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D)
    logits = z @ z.T / temperature  # (2B, 2B)
    rows = torch.arange(2 * b, device=z.device)
    positive = (rows + b) % (2 * b)
    pid = patient.to(z.device).repeat(2)
    drop = pid[:, None] == pid[None, :]  # self + same-patient views
    drop[rows, positive] = False  # ... except the positive itself
    logits = logits.masked_fill(drop, float("-inf"))
    return F.cross_entropy(logits, positive, reduction=reduction)


@register_method("micle")
class MICLe(SimCLR):
    """SimCLR's encoder + projection (shared code), trained on same-patient pairs with a
    patient-masked NT-Xent instead of lightly's plain one."""

    family: ClassVar[str] = "contrastive"
    summary: ClassVar[str] = "two images or recordings of one patient form a positive pair; other patients are negatives"
    lightly_parts: ClassVar[str] = "NTXentLoss (reference), SimCLRProjectionHead"

    pairing: ClassVar[str] = "patient"

    def __init__(
        self,
        encoder: nn.Module,
        temperature: float = 0.1,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
        partner: str = "random",
        partner_k: int = 1,
        partner_prob: float = 1.0,
        mask_patient_negatives: bool = True,
    ) -> None:
        super().__init__(encoder, temperature, projection_dim, hidden_dim)
        from medssl.data.pairs import PARTNERS

        if partner not in PARTNERS:
            raise ValueError(f"partner must be one of {PARTNERS}, got {partner!r}")
        self.temperature = temperature
        self._pair_options = {"partner": partner, "partner_k": int(partner_k), "partner_prob": float(partner_prob)}
        self.mask_patient_negatives = bool(mask_patient_negatives)

    @property
    def pair_options(self) -> dict[str, Any]:
        """``partner``, ``partner_k``, ``partner_prob`` for the pair dataset."""
        return dict(self._pair_options)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Patient-masked NT-Xent between ``view1`` and ``view2`` (``batch["patient"]`` masks negatives);
        plain NT-Xent (every other view is a negative) with ``mask_patient_negatives=False``."""
        z1, z2 = self.project(batch["view1"]), self.project(batch["view2"])
        patient = batch["patient"] if self.mask_patient_negatives else torch.arange(z1.shape[0], device=z1.device)
        return patient_masked_nt_xent(z1, z2, patient, self.temperature)
