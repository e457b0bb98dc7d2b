"""``entity_sequence``: a transaction read together with its entity's recent history.

Input ``(B, (1 + N) * (F + 1))`` (see ``medssl/data/transactions/dataset.py``): slot 0 is the
transaction, slots 1..N the same account's previous transactions (most recent first), each
ending in a presence flag. Every slot is embedded by a shared row embedding + linear layer,
gets a learned slot-position embedding, and a small transformer attends over the present
slots (padding masked out); the output at slot 0 is the embedding ``(B, d_model)``.
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.encoders.registry import EncoderExample, register_encoder
from medssl.encoders.tabular_mlp import RowEmbedding, _check_layout, split_slots


@register_encoder("entity_sequence", EncoderExample({"n_numeric": 6, "cardinalities": [4, 3], "history": 3,
                                                      "d_model": 16, "n_layers": 1, "n_heads": 2},
                                                     ((1 + 3) * (8 + 1),), "transactions"))
class EntitySequenceEncoder(nn.Module):
    """Transformer over ``1 + history`` transaction slots: ``(B, (1+N)(F+1)) -> (B, d_model)``."""

    def __init__(self, n_numeric: int, cardinalities: list[int] | None = None, history: int = 8,
                 d_model: int = 64, n_layers: int = 2, n_heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        cardinalities = list(cardinalities or [])
        _check_layout(n_numeric, cardinalities, history)
        self.n_numeric, self.cardinalities, self.history = n_numeric, cardinalities, history
        self.row = RowEmbedding(n_numeric, cardinalities)
        self.project = nn.Linear(self.row.out_dim, d_model)
        self.position = nn.Parameter(torch.randn(1, 1 + history, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.num_features = d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, (1+N)(F+1))`` (or ``(B, F)`` when history is 0) -> ``(B, d_model)``."""
        numeric, categorical, present = split_slots(x, self.n_numeric, self.cardinalities, self.history)
        tokens = self.project(self.row(numeric, categorical)) + self.position
        out = self.transformer(tokens, src_key_padding_mask=~present)
        return self.norm(out[:, 0])
