"""``ft_transformer``: FT-Transformer (Gorishniy et al. 2021) for one table row.

Each feature becomes a token (numeric ``x_j * w_j + b_j``, categorical an embedding + a column
bias), a learned [CLS] token is prepended, a small pre-norm transformer mixes them and the
normalised [CLS] output is the embedding. Input layout as in ``tabular_mlp`` (slot 0 is used
when the input carries history).
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.encoders.registry import EncoderExample, register_encoder
from medssl.encoders.tabular_mlp import _check_layout, split_slots


class FeatureTokenizer(nn.Module):
    """``numeric (B, Fn)``, ``categorical (B, C)`` -> tokens ``(B, Fn + C, d_token)``."""

    def __init__(self, n_numeric: int, cardinalities: list[int], d_token: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_numeric, d_token) / d_token ** 0.5)
        self.bias = nn.Parameter(torch.zeros(n_numeric + len(cardinalities), d_token))
        offsets = torch.tensor([0] + list(cardinalities[:-1]), dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.categories = nn.Embedding(max(1, sum(cardinalities)), d_token)
        self.n_cat = len(cardinalities)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        tokens = [numeric.unsqueeze(-1) * self.weight]
        if self.n_cat:
            tokens.append(self.categories(categorical + self.offsets))
        return torch.cat(tokens, dim=1) + self.bias


@register_encoder("ft_transformer", EncoderExample({"n_numeric": 6, "cardinalities": [4, 3], "d_token": 16,
                                                     "n_layers": 1, "n_heads": 2}, (8,), "transactions"))
class FTTransformer(nn.Module):
    """Feature tokens + [CLS] + transformer: ``(B, F) -> (B, d_token)``."""

    def __init__(self, n_numeric: int, cardinalities: list[int] | None = None, history: int = 0,
                 d_token: int = 32, n_layers: int = 2, n_heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        cardinalities = list(cardinalities or [])
        _check_layout(n_numeric, cardinalities, history)
        self.n_numeric, self.cardinalities, self.history = n_numeric, cardinalities, history
        self.tokenizer = FeatureTokenizer(n_numeric, cardinalities, d_token)
        self.cls = nn.Parameter(torch.randn(1, 1, d_token) * 0.02)
        layer = nn.TransformerEncoderLayer(d_token, n_heads, dim_feedforward=2 * d_token, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_token)
        self.num_features = d_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, F)`` -> ``(B, d_token)`` (the [CLS] output)."""
        numeric, categorical, _ = split_slots(x, self.n_numeric, self.cardinalities, self.history)
        tokens = self.tokenizer(numeric[:, 0], categorical[:, 0])
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        return self.norm(self.transformer(tokens)[:, 0])
