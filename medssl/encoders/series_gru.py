"""``gru``: a GRU over time for series ``(B, C, T)`` (EHR grids with masks, signals).

``forward_sequence`` -> ``(B, T, num_features)`` (the hidden state at every step, a linear
projection of the top layer); ``forward`` -> ``(B, num_features)``: the mean over observed steps
(steps where any of the trailing ``mask_channels`` channels is 1; all steps when there is no
mask or nothing was observed). The masks enter the GRU as inputs (as in GRU-D's "mask" input).
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.encoders.registry import EncoderExample, register_encoder
from medssl.encoders.series_tcn import observed_steps


@register_encoder(
    "gru",
    EncoderExample({"in_channels": 6, "hidden": 12, "num_features": 8, "num_layers": 2, "mask_channels": 3}, (6, 24), "ehr"),
)
class GRUEncoder(nn.Module):
    """GRU over ``(B, C, T)``; ``forward_sequence`` -> ``(B, T, F)``, ``forward`` -> ``(B, F)``."""

    def __init__(self, in_channels: int, hidden: int = 128, num_features: int = 128, num_layers: int = 1,
                 dropout: float = 0.0, mask_channels: int = 0) -> None:
        super().__init__()
        if not 0 <= mask_channels < in_channels:
            raise ValueError(f"mask_channels={mask_channels} must be in [0, in_channels={in_channels})")
        self.in_channels, self.mask_channels, self.num_features = in_channels, mask_channels, num_features
        self.gru = nn.GRU(in_channels, hidden, num_layers=num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.out = nn.Linear(hidden, num_features)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, T, num_features)``."""
        h, _ = self.gru(x.transpose(1, 2))
        return self.out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, num_features)``: mean over (observed) steps."""
        seq = self.forward_sequence(x)
        seen = observed_steps(x, self.mask_channels)
        if seen is None:
            return seq.mean(dim=1)
        w = seen.to(seq.dtype)[..., None]
        return (seq * w).sum(dim=1) / w.sum(dim=1)
