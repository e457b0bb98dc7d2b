"""Masked value modelling on the EHR grid (BERT-style): hide observed values, predict them back.

An EHR case is ``(2C, T)``: C value channels, then their C observation masks (see
``medssl/data/ehr/dataset.py``). A random ``mask_rate`` share of the OBSERVED entries (mask > 0.5)
of each batch is hidden: value set to 0 and its mask bit to 0, so the encoder sees them as not
measured. The encoder embeds the hidden-out grid ``z (B, D)``; a per-position query head
predicts the value of every entry (c, t)::

    value[b, c, t] = w . GELU(A z_b + E_var[c] + P(sin/cos features of t)) + bias

and the loss is the mean squared error over the hidden entries only (``masked_value_loss``):
entries never observed, and observed entries left visible, do not count. Only ``view1`` (the
domain's augmented view) is used; ``view2`` and ``patient`` are ignored. Needs an encoder with
``mask_channels`` = C and ``in_channels`` = 2C (``gru``, ``ts2vec_tcn``: the ehr domain sets
both).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method, require_sizes


def masked_value_loss(prediction: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Mean of ``(prediction - target)^2`` over the entries where ``hidden`` (bool) is True; all
    three ``(B, C, T)``. With nothing hidden: 0 (still attached to ``prediction``'s graph)."""
    weight = hidden.to(prediction.dtype)
    return ((prediction - target).square() * weight).sum() / weight.sum().clamp_min(1.0)


def hide_observed(x: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (B, 2C, T) -> (the grid with a ``rate`` share of its observed entries hidden (value and
    mask bit 0), ``hidden`` (B, C, T) bool). Each observed entry is hidden with probability ``rate``."""
    c = x.shape[1] // 2
    observed = x[:, c:] > 0.5
    hidden = observed & (torch.rand(observed.shape, generator=generator, device=x.device) < rate)
    keep = (~hidden).to(x.dtype)
    return torch.cat([x[:, :c] * keep, x[:, c:] * keep], dim=1), hidden


def time_features(t: int, n: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal features of steps ``0..t-1`` (t, n) (transformer positional encoding; n even)."""
    pos = torch.arange(t, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, n, 2, device=device, dtype=torch.float32) * (-math.log(1000.0) / n))
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1)


@register_method("masked_ehr")
class MaskedEHR(SSLMethod):
    """Hide observed EHR values, predict each from the embedding + a (variable, time) query."""

    pairing: ClassVar[str] = "augment"
    family: ClassVar[str] = "masked modelling"
    summary: ClassVar[str] = ("an ICU-stay embedding from which hidden observed values can be predicted back "
                              "(BERT-style, MSE on hidden entries only)")
    lightly_parts: ClassVar[str] = ""  # lightly has no masked-value parts and refuses series
    supported_domains: ClassVar[tuple[str, ...]] = ("ehr",)
    TIME_FEATURES: ClassVar[int] = 16

    def __init__(self, encoder: nn.Module, mask_rate: float = 0.15, hidden_dim: int | None = None) -> None:
        super().__init__(encoder)
        c, in_channels = getattr(encoder, "mask_channels", 0), getattr(encoder, "in_channels", None)
        if not c or in_channels != 2 * c:
            raise ConfigError(
                f"masked_ehr needs an EHR encoder whose second half of in_channels are observation masks "
                f"(mask_channels = in_channels / 2, e.g. gru or ts2vec_tcn on ehr data); "
                f"{type(encoder).__name__} has in_channels={in_channels}, mask_channels={c or 0}"
            )
        if not 0.0 < mask_rate < 1.0:
            raise ConfigError(f"masked_ehr mask_rate must be in (0, 1), got {mask_rate}")
        require_sizes("masked_ehr", hidden_dim=hidden_dim)
        self.mask_rate, self.channels = float(mask_rate), int(c)
        h = hidden_dim or int(encoder.num_features)
        self.from_embedding = nn.Linear(int(encoder.num_features), h)
        self.variable = nn.Parameter(torch.randn(self.channels, h) * 0.02)  # (C, h)
        self.time = nn.Linear(self.TIME_FEATURES, h, bias=False)
        self.out = nn.Linear(h, 1)

    def predict_grid(self, z: torch.Tensor, t: int) -> torch.Tensor:
        """Embeddings ``z`` (B, D) -> predicted values of every entry (B, C, t)."""
        query = self.variable[:, None, :] + self.time(time_features(t, self.TIME_FEATURES, z.device))[None]  # (C, t, h)
        hid = F.gelu(self.from_embedding(z)[:, None, None, :] + query[None])  # (B, C, t, h)
        return self.out(hid).squeeze(-1)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """MSE over the hidden observed values of ``batch["view1"]`` (B, 2C, T)."""
        x = batch["view1"]
        if x.shape[1] != 2 * self.channels:
            raise ConfigError(f"masked_ehr: cases have {x.shape[1]} channels, the encoder expects {2 * self.channels} "
                              f"(values then masks); pretrain on an ehr DATA_DIR")
        corrupted, hidden = hide_observed(x, self.mask_rate)
        prediction = self.predict_grid(self.encoder(corrupted), x.shape[-1])
        return masked_value_loss(prediction, x[:, : self.channels], hidden)
