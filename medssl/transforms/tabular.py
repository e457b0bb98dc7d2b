"""Random feature corruption for table rows (SCARF, VIME): replace features with draws from
their empirical marginal distribution.

Two forms:

- ``corrupt_from_batch(x, rate)``: batch-level; each corrupted entry ``x[i, j]`` takes the value
  of column ``j`` in a random other row of the batch (the batch's empirical marginal). This is
  what the ``scarf`` and ``vime`` methods use inside ``training_loss``, so the per-sample
  augment of the pair dataset can stay the identity.
- ``FeatureCorruption``: ``Tensor -> Tensor`` per row, or ``batch(x)`` per batch (the
  ``transactions`` domain's ``make_augment``), drawing replacements from a reference sample of training rows when given
  one, else replacing by 0 (= the train median of a scaled numeric, the "unknown" category).

Only the first ``columns`` entries of a vector are corrupted (slot 0 of an item with history,
see ``medssl/data/transactions/dataset.py``); ``None`` = all.
"""

from __future__ import annotations

import torch


def corruption_mask(shape: tuple[int, int], rate: float, columns: int | None = None,
                    generator: torch.Generator | None = None, device: torch.device | None = None) -> torch.Tensor:
    """Bool ``(B, W)``: True where an entry is corrupted (prob. ``rate``, first ``columns`` only)."""
    mask = torch.rand(shape, generator=generator, device=device) < rate
    if columns is not None:
        mask[:, columns:] = False
    return mask


def corrupt_from_batch(x: torch.Tensor, rate: float, columns: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``x`` ``(B, W)``; returns ``(x_tilde (B, W), mask (B, W) bool)``.

    Replacement for entry ``(i, j)`` is ``x[r, j]`` with ``r`` uniform over the batch rows.
    """
    b, w = x.shape
    mask = corruption_mask((b, w), rate, columns, generator, x.device)
    donors = torch.randint(0, b, (b, w), generator=generator, device=x.device)
    replacement = torch.gather(x, 0, donors)
    return torch.where(mask, replacement, x), mask


class FeatureCorruption:
    """Per-sample corruption of a vector ``(W,)`` with probability ``rate`` per feature."""

    def __init__(self, rate: float, reference: torch.Tensor | None = None, columns: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"corruption rate must be in [0, 1], got {rate}")
        self.rate = rate
        self.reference = reference
        self.columns = columns

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """One corrupted copy of ``x`` ``(W,)``."""
        return self.batch(x[None])[0]

    def batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Corrupted copies of the rows of ``x`` ``(B, W)``, each entry with probability ``rate``."""
        if self.rate == 0.0:
            return x.clone()
        b, w = x.shape
        mask = corruption_mask((b, w), self.rate, self.columns, generator, x.device)
        if self.reference is None:
            replacement = torch.zeros_like(x)
        else:
            ref = self.reference.to(device=x.device, dtype=x.dtype)
            rows = torch.randint(0, ref.shape[0], (b, w), generator=generator, device=x.device)
            replacement = ref.gather(0, rows)
        return torch.where(mask, replacement, x)
