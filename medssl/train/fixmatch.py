"""FixMatch-style consistency training (Sohn et al. 2020) inside full fine-tuning.

Each step sees a labelled batch and a batch of unlabelled train cases. For an unlabelled case the
model's prediction on the case as it is (the weak view: no augmentation) becomes a pseudo-label
when its top class probability reaches ``threshold``; the model is then trained to predict that
class on a strongly augmented view of the same case (the domain's ``make_augment``). Loss =
class-weighted cross-entropy on the labelled batch + ``weight`` x the masked pseudo-label
cross-entropy (averaged over the whole unlabelled batch, as in the paper).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from medssl.train.full import FullFinetuneModule


class WeakStrong(Dataset):
    """Unlabelled pairs: item ``j`` is ``(x, augment(x))`` with ``x = dataset[rows[j]]`` (both ``(*input_shape)``)."""

    def __init__(self, dataset: Dataset, rows: np.ndarray, augment: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.dataset, self.rows, self.augment = dataset, np.asarray(rows, dtype=np.int64), augment

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dataset[int(self.rows[j])]
        return x, self.augment(x)

    def __getitems__(self, js: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A DataLoader's batched fetch: uses the dataset's own ``__getitems__`` when it has one."""
        fetch = getattr(self.dataset, "__getitems__", None)
        rows = [int(self.rows[j]) for j in js]
        xs = fetch(rows) if callable(fetch) else [self.dataset[r] for r in rows]
        return [(x, self.augment(x)) for x in xs]


class FixMatchModule(FullFinetuneModule):
    """``FullFinetuneModule`` whose training batch is ``{"x": (x, y), "u": (weak, strong)}``.

    ``x`` ``(B, *input_shape)`` with class ids ``y`` ``(B,)``; ``weak`` and ``strong`` ``(U, *input_shape)``.
    The epoch log gains ``pseudo_label_rate`` (share of unlabelled cases above the threshold)."""

    def __init__(self, *args: Any, threshold: float = 0.95, weight: float = 1.0) -> None:
        super().__init__(*args)
        self.threshold, self.weight = threshold, weight
        self._kept: list[float] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, y = batch["x"]
        weak, strong = batch["u"]
        n, u = len(x), len(weak)
        logits = self(torch.cat([x, weak, strong]))  # one pass: BatchNorm sees labelled and unlabelled together
        supervised = self.loss_fn(logits[:n], y)
        with torch.no_grad():
            conf, pseudo = torch.softmax(logits[n:n + u].detach().float(), dim=1).max(dim=1)
            keep = (conf >= self.threshold).to(logits.dtype)
        consistency = (F.cross_entropy(logits[n + u:], pseudo, reduction="none") * keep).mean()
        loss = supervised + self.weight * consistency
        self._train_losses.append(float(loss.detach()))
        self._kept.append(float(keep.mean()))
        return loss

    def on_train_epoch_end(self) -> None:
        rate = float(np.mean(self._kept)) if self._kept else 0.0
        self._kept.clear()
        super().on_train_epoch_end()
        self.history[-1]["pseudo_label_rate"] = rate
