"""Scoring one chunk of manifest rows: decode (DataLoader), embed, predict, anomaly-score.

Both engines call ``score_chunk``; the local engine in-process, the Ray engine inside each actor,
so the two give the same numbers. A case whose input fails to decode (the domain dataset raises
``ReaderError``) is reported in ``ChunkResult.errors`` and the rest of the chunk goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medssl.data import get_domain
from medssl.errors import CheckpointError, ReaderError
from medssl.models import Model


class _SafeItems(Dataset):
    """Wraps a domain dataset so one unreadable case does not kill its batch.

    Item ``i`` is ``(i, tensor, None)`` or ``(i, None, reason)`` when the case fails to decode.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, tuple[str, str] | None]:
        try:
            return index, self.dataset[index], None
        except ReaderError as exc:
            return index, None, (exc.path, exc.reason)

    def __getitems__(self, indices: list[int]) -> list[tuple[int, torch.Tensor | None, tuple[str, str] | None]]:
        """A whole batch through the dataset's own batched fetch when it has one (faster); if any
        case of the batch fails, the batch is fetched again case by case so only that case is lost."""
        batched = getattr(self.dataset, "__getitems__", None)
        if batched is not None:
            try:
                return [(i, x, None) for i, x in zip(indices, batched(indices))]
            except ReaderError:
                pass
        return [self[i] for i in indices]


def _collate(items: list[tuple[int, torch.Tensor | None, tuple[str, str] | None]]) -> dict[str, Any]:
    ok = [(i, x) for i, x, err in items if err is None]
    return {
        "index": torch.tensor([i for i, _ in ok], dtype=torch.int64),
        "x": torch.stack([x for _, x in ok]) if ok else None,
        "errors": [(i, err) for i, _, err in items if err is not None],
    }


@dataclass
class ChunkResult:
    """What one chunk gives. ``ok`` are positions (within the chunk) of the scored cases.

    ``embeddings`` ``(n_ok, D)`` float32; ``anomaly_score``/``anomaly_percentile``/``predicted_proba``
    ``(n_ok,)`` float64; ``predicted_label`` ``(n_ok,)`` object (``None`` without a head);
    ``errors``: ``(position, path, reason)`` per case that failed to decode.
    """

    ok: np.ndarray
    embeddings: np.ndarray
    anomaly_score: np.ndarray
    anomaly_percentile: np.ndarray
    predicted_label: np.ndarray
    predicted_proba: np.ndarray
    errors: list[tuple[int, str, str]]


def make_chunk_dataset(model: Model, data_dir: Path, rows: pd.DataFrame) -> Any:
    """The model's domain dataset over ``rows`` with the model's saved preprocessing."""
    if model.preprocessing is None:
        raise CheckpointError(
            f"{model.path} carries no preprocessing (meta['preprocessing']); scoring would have to "
            "guess how the inputs were prepared. Re-create it with `medssl pretrain` or `medssl finetune`"
        )
    return get_domain(model.domain).make_dataset(Path(data_dir), rows.reset_index(drop=True), model.preprocessing)


def decode_batches(model: Model, data_dir: Path, rows: pd.DataFrame, batch_size: int, num_workers: int = 0) -> Any:
    """The decoded batches of ``rows``: dicts ``{"index", "x", "errors"}`` (see ``_collate``)."""
    return DataLoader(
        _SafeItems(make_chunk_dataset(model, data_dir, rows)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=model.device.type == "cuda",
    )


def anomaly_features_chunk(
    model: Model, data_dir: Path, rows: pd.DataFrame, batch_size: int, num_workers: int = 0
) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """``(anomaly-recipe features (n_ok, P) float64, errors)`` of the manifest ``rows`` (to fit a scorer)."""
    feats: list[np.ndarray] = []
    errors: list[tuple[int, str, str]] = []
    for batch in decode_batches(model, data_dir, rows, batch_size, num_workers):
        errors.extend((i, path, reason) for i, (path, reason) in batch["errors"])
        if batch["x"] is not None:
            feats.append(model.anomaly_features(batch["x"], model.embed_batch(batch["x"])))
    return (np.concatenate(feats) if feats else np.zeros((0, 0))), errors


def score_chunk(
    model: Model, data_dir: Path, rows: pd.DataFrame, batch_size: int, num_workers: int = 0
) -> ChunkResult:
    """Decode, embed, anomaly-score and predict the manifest ``rows`` (one chunk)."""
    ok: list[torch.Tensor] = []
    outs = []
    pending: list[torch.Tensor] = []  # embeddings scored together at the end of the chunk (fewer, larger calls)
    errors: list[tuple[int, str, str]] = []
    for batch in decode_batches(model, data_dir, rows, batch_size, num_workers):
        errors.extend((i, path, reason) for i, (path, reason) in batch["errors"])
        if batch["x"] is not None:
            ok.append(batch["index"])
            if model.needs_inputs:
                outs.append(model.run_batch(batch["x"]))
            else:
                pending.append(model.embed_batch(batch["x"]))
    if pending:
        outs.append(model.run_embedded(None, torch.cat(pending)))
    n = sum(len(o.embeddings) for o in outs)
    if not n:
        dim = int(model.encoder.num_features)
        return ChunkResult(np.zeros(0, np.int64), np.zeros((0, dim), np.float32), np.zeros(0), np.zeros(0),
                           np.zeros(0, dtype=object), np.zeros(0), errors)
    emb = torch.cat([o.embeddings for o in outs]).numpy().astype(np.float32, copy=False)
    scores = np.concatenate([o.anomaly_score for o in outs])
    pct = np.concatenate([o.anomaly_percentile for o in outs])
    pred = model.predict(None if outs[0].proba is None else np.concatenate([o.proba for o in outs]))
    labels = pred[0] if pred is not None else np.full(n, None, dtype=object)
    proba = pred[1] if pred is not None else np.full(n, np.nan)
    return ChunkResult(torch.cat(ok).numpy(), emb, scores, pct, labels, proba, errors)
