"""Batched embedding of a domain dataset with an encoder (no gradients, eval mode)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from medssl.encoders.inference import InferenceEncoder
from medssl.errors import ConfigError
from medssl.progress import progress


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    A CUDA device this machine does not have raises ``ConfigError`` (not a CUDA traceback later).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible == 0:
            raise ConfigError(
                f"device {device!r}: torch sees no GPU on this machine (CUDA build {torch.version.cuda or 'none'}); "
                "use --device cpu, or auto to take a GPU only when there is one"
            )
        if resolved.index is not None and resolved.index >= visible:
            raise ConfigError(f"device {device!r}: this machine has {visible} GPU(s) (cuda:0 to cuda:{visible - 1})")
    elif resolved.type not in ("cpu", "mps"):
        raise ConfigError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    return resolved


def embed(
    encoder: nn.Module,
    dataset: Dataset,
    rows: Sequence[int] | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    desc: str = "embedding",
) -> torch.Tensor:
    """Embeddings ``(N, num_features)`` float32 on the CPU of ``dataset`` (or of its ``rows``).

    Item ``i`` of the dataset is one input tensor ``(*input_shape)``; the encoder is put in eval
    mode (BatchNorm uses its running statistics) and restored to its previous mode afterwards. It
    runs in inference form (``medssl.encoders.inference``), as ``medssl score`` runs it, so the
    embeddings a model file's statistics are fitted on match the ones it is scored with.
    """
    data = dataset if rows is None else Subset(dataset, list(map(int, rows)))
    n = len(data)
    if n == 0:
        return torch.zeros(0, int(encoder.num_features))
    device = torch.device(device)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
    was_training = encoder.training
    fast = InferenceEncoder(encoder, device)  # eval mode, batch-norm folded, channels-last on CPU
    out: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for batch in progress(loader, total=len(loader), desc=desc, unit="batch"):
                out.append(fast(batch.to(device)).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(out)
