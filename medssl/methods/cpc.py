"""CPC (van den Oord et al. 2018; wav2vec style): an autoregressive context predicts future latents.

The window ``view1`` (B, C, T) is cut into ``segments`` S equal, non-overlapping segments of
``L = T // S`` steps (the last ``T - S * L`` steps are left out). The encoder embeds every segment
on its own: ``(B * S, C, L) -> z (B, S, D)``. A GRU context network reads ``z`` left to right:
``c (B, S, H)``; ``c_t`` has seen segments ``0..t`` only. For every horizon ``k = 1..predict_steps``
a linear head predicts ``z_{t+k}`` from ``c_t``. InfoNCE per horizon: the prediction for
(case b, step t) must pick ``z[b, t+k]`` among the latents ``z[b', t'+k]`` of every step and every
case of the batch (``info_nce``: cosine similarity / ``temperature``, as wav2vec 2.0); the loss
is the mean over horizons.

Why segments and not ``forward_sequence``: the per-step outputs of ``ts2vec_tcn`` see far into
the future (same-padded dilated convolutions), so a context over them could read ``z_{t+k}``
off ``c_t``; an encoder that only sees its own segment cannot leak the future. Any series
encoder works (``ts2vec_tcn``, ``gru``), and the encoder trained is the one fine-tuning uses on
whole windows. EHR grids ``(2C, T)`` work too: each segment keeps its masks, the encoder pools
over observed steps. Only ``view1`` is used (pairing ``"augment"``; ``view2`` and ``patient``
are ignored).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method, require_sizes


def info_nce(predictions: torch.Tensor, targets: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE of ``predictions`` and ``targets`` (N, D): row i of ``targets`` is the positive of
    prediction i, every other row a negative. Logits are cosine similarities / ``temperature``;
    returns the mean over the N predictions of ``-log softmax(logits)[i, i]``."""
    logits = F.normalize(predictions, dim=1) @ F.normalize(targets, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def cpc_loss(context: torch.Tensor, latents: torch.Tensor, heads: nn.ModuleList, temperature: float) -> torch.Tensor:
    """Mean over horizons k = 1..len(heads) of ``info_nce(heads[k-1](c_t), z_{t+k})`` over all
    (case, step) pairs with ``t + k < S``. ``context`` (B, S, H), ``latents`` (B, S, D)."""
    d = latents.shape[-1]
    losses = []
    for k, head in enumerate(heads, start=1):
        pred = head(context[:, :-k]).reshape(-1, d)  # (B * (S - k), D)
        losses.append(info_nce(pred, latents[:, k:].reshape(-1, d), temperature))
    return torch.stack(losses).mean()


@register_method("cpc")
class CPC(SSLMethod):
    """Segment encoder + GRU context + one linear predictor per horizon + InfoNCE (see module doc)."""

    pairing: ClassVar[str] = "augment"
    family: ClassVar[str] = "contrastive predictive"
    summary: ClassVar[str] = ("segment embeddings from which a running context predicts the next segments' "
                              "embeddings (InfoNCE against other steps and cases)")
    lightly_parts: ClassVar[str] = ""  # lightly has no CPC parts and refuses series
    supported_domains: ClassVar[tuple[str, ...]] = ("signals", "ehr")

    def __init__(self, encoder: nn.Module, segments: int = 8, predict_steps: int = 3, context_dim: int | None = None,
                 temperature: float = 0.1) -> None:
        super().__init__(encoder)
        require_sizes("cpc", segments=segments, predict_steps=predict_steps, context_dim=context_dim)
        if segments < 2 or predict_steps >= segments:
            raise ConfigError(f"cpc needs segments >= 2 and predict_steps < segments (a context step must have a "
                              f"future to predict); got segments={segments}, predict_steps={predict_steps}")
        if not temperature > 0:
            raise ConfigError(f"cpc temperature must be above 0, got {temperature}")
        self.segments, self.temperature = segments, float(temperature)
        d = int(encoder.num_features)
        h = context_dim or d
        self.context = nn.GRU(d, h, batch_first=True)
        self.predictors = nn.ModuleList(nn.Linear(h, d) for _ in range(predict_steps))

    def segment_latents(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T) -> latents (B, S, D), each segment encoded on its own."""
        b, c, t = x.shape
        length = t // self.segments
        if length < 1:
            raise ConfigError(f"cpc: windows of {t} steps cannot be cut into segments={self.segments}; "
                              f"lower method_options.segments to at most {t}")
        pieces = x[:, :, : self.segments * length].reshape(b, c, self.segments, length)
        pieces = pieces.permute(0, 2, 1, 3).reshape(b * self.segments, c, length)
        return self.encoder(pieces).reshape(b, self.segments, -1)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """CPC loss on ``batch["view1"]`` (B, C, T)."""
        z = self.segment_latents(batch["view1"])
        context, _ = self.context(z)
        return cpc_loss(context, z, self.predictors, self.temperature)
