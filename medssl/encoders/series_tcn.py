"""``ts2vec_tcn``: the dilated convolutional encoder of TS2Vec (Yue et al. 2022).

Input ``(B, C, T)`` -> per-step linear projection to ``hidden`` -> ``depth`` residual blocks of
two same-padded dilated convolutions (dilation 1, 2, 4, ...) -> ``(B, T, num_features)``
(``forward_sequence``); ``forward`` max-pools over time to ``(B, num_features)``.

``mask_channels``: the last ``mask_channels`` input channels are observation masks (EHR); they
are encoder inputs like any channel, and pooling only looks at time steps where at least one
of them is 1 (all steps when a case has no observation at all).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medssl.encoders.registry import EncoderExample, register_encoder


def observed_steps(x: torch.Tensor, mask_channels: int) -> torch.Tensor | None:
    """``(B, T)`` bool: steps with any observation in the trailing mask channels of ``x`` (B, C, T)."""
    if mask_channels <= 0:
        return None
    seen = x[:, -mask_channels:].amax(dim=1) > 0
    return seen | ~seen.any(dim=1, keepdim=True)  # a case with nothing observed pools over all steps


class SamePadConv(nn.Module):
    """Conv1d whose output has the input's length for any kernel size and dilation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        field = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=field // 2, dilation=dilation)
        self.remove = 1 if field % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out[:, :, : out.shape[-1] - self.remove]


class ConvBlock(nn.Module):
    """GELU -> dilated conv -> GELU -> dilated conv, plus a (1x1-projected) residual."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, final: bool) -> None:
        super().__init__()
        self.conv1 = SamePadConv(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = SamePadConv(out_channels, out_channels, kernel_size, dilation)
        self.projector = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels or final else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.projector is None else self.projector(x)
        x = self.conv1(F.gelu(x))
        x = self.conv2(F.gelu(x))
        return x + residual


@register_encoder(
    "ts2vec_tcn",
    EncoderExample({"in_channels": 4, "hidden": 8, "num_features": 16, "depth": 3, "mask_channels": 2}, (4, 32), "signals"),
)
class TS2VecEncoder(nn.Module):
    """Dilated CNN over ``(B, C, T)``; ``forward_sequence`` -> ``(B, T, F)``, ``forward`` -> ``(B, F)``."""

    def __init__(self, in_channels: int, hidden: int = 64, num_features: int = 320, depth: int = 10,
                 kernel_size: int = 3, dropout: float = 0.1, mask_channels: int = 0) -> None:
        super().__init__()
        if not 0 <= mask_channels < in_channels:
            raise ValueError(f"mask_channels={mask_channels} must be in [0, in_channels={in_channels})")
        self.in_channels, self.mask_channels, self.num_features = in_channels, mask_channels, num_features
        self.input_fc = nn.Linear(in_channels, hidden)
        widths = [hidden] * depth + [num_features]
        self.blocks = nn.Sequential(*[
            ConvBlock(widths[i - 1] if i else hidden, widths[i], kernel_size, 2**i, final=i == len(widths) - 1)
            for i in range(len(widths))
        ])
        self.dropout = nn.Dropout(dropout)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> per-step representations ``(B, T, num_features)``."""
        h = self.input_fc(x.transpose(1, 2)).transpose(1, 2)  # (B, hidden, T)
        return self.dropout(self.blocks(h)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, num_features)``: max over (observed) time steps."""
        seq = self.forward_sequence(x)
        seen = observed_steps(x, self.mask_channels)
        if seen is not None:
            seq = seq.masked_fill(~seen[..., None], float("-inf"))
        return seq.amax(dim=1)
