"""Table-row encoders' shared input parsing, and ``tabular_mlp`` (SCARF's backbone shape).

Input (see ``medssl/data/transactions/dataset.py``): ``(B, F)`` with ``F = n_numeric +
len(cardinalities)``: scaled numerics (and missing indicators) first, then categorical indices
stored as floats; or, when ``history = N > 0``, ``(B, (1 + N) * (F + 1))`` = ``N + 1`` slots of
``F`` values plus a presence flag (slot 0 = the transaction itself). Indices outside
``[0, cardinality)`` are clamped (0 is the "unknown" category).
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.encoders.registry import EncoderExample, register_encoder


def split_slots(x: torch.Tensor, n_numeric: int, cardinalities: list[int], history: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` -> numeric ``(B, S, n_numeric)``, categorical ``(B, S, C)`` int64, present ``(B, S)`` bool.

    ``S = 1 + history``; slot 0 is always present.
    """
    width = n_numeric + len(cardinalities)
    slots = 1 + history
    expected = width if history == 0 else slots * (width + 1)
    if x.ndim != 2 or x.shape[1] != expected:
        raise ValueError(f"tabular input must be (B, {expected}) for {n_numeric} numeric, "
                         f"{len(cardinalities)} categorical features and history {history}; got {tuple(x.shape)}")
    if history == 0:
        values = x.unsqueeze(1)
        present = torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device)
    else:
        grid = x.reshape(x.shape[0], slots, width + 1)
        values, present = grid[..., :width], grid[..., width] > 0.5
        present = torch.cat([torch.ones_like(present[:, :1]), present[:, 1:]], dim=1)
    numeric = values[..., :n_numeric]
    limits = torch.as_tensor(cardinalities, device=x.device, dtype=torch.long) - 1
    categorical = values[..., n_numeric:].round().long().clamp(min=0)
    categorical = torch.minimum(categorical, limits) if cardinalities else categorical
    return numeric, categorical, present


def embedding_dim(cardinality: int) -> int:
    """fast.ai's rule of thumb for a categorical embedding width, capped at 16."""
    return int(min(16, max(2, round(1.6 * cardinality ** 0.56))))


class RowEmbedding(nn.Module):
    """One row -> ``(…, out_dim)``: numerics as they are, each category through its embedding."""

    def __init__(self, n_numeric: int, cardinalities: list[int]) -> None:
        super().__init__()
        self.n_numeric = n_numeric
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_dim(c)) for c in cardinalities)
        self.out_dim = n_numeric + sum(e.embedding_dim for e in self.embeddings)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """``numeric (…, n_numeric)``, ``categorical (…, C)`` int64 -> ``(…, out_dim)``."""
        parts = [numeric] + [emb(categorical[..., j]) for j, emb in enumerate(self.embeddings)]
        return torch.cat(parts, dim=-1)


def _check_layout(n_numeric: int, cardinalities: list[int], history: int) -> None:
    if n_numeric < 0 or history < 0 or any(c < 1 for c in cardinalities) or n_numeric + len(cardinalities) == 0:
        raise ValueError(f"bad tabular layout: n_numeric={n_numeric}, cardinalities={cardinalities}, history={history}")


@register_encoder("tabular_mlp", EncoderExample({"n_numeric": 6, "cardinalities": [4, 3], "hidden": 32,
                                                  "num_features": 16}, (8,), "transactions"))
class TabularMLP(nn.Module):
    """ReLU MLP over one row (slot 0 when the input carries history): ``(B, F) -> (B, num_features)``."""

    def __init__(self, n_numeric: int, cardinalities: list[int] | None = None, history: int = 0,
                 hidden: int = 256, depth: int = 3, num_features: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        cardinalities = list(cardinalities or [])
        _check_layout(n_numeric, cardinalities, history)
        self.n_numeric, self.cardinalities, self.history = n_numeric, cardinalities, history
        self.row = RowEmbedding(n_numeric, cardinalities)
        layers: list[nn.Module] = []
        width = self.row.out_dim
        for _ in range(depth - 1):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_features))
        self.mlp = nn.Sequential(*layers)
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, F)`` or ``(B, (1+N)(F+1))`` -> ``(B, num_features)``."""
        numeric, categorical, _ = split_slots(x, self.n_numeric, self.cardinalities, self.history)
        return self.mlp(self.row(numeric[:, 0], categorical[:, 0]))
