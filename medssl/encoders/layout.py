"""Memory layout for CPU work: conv encoders run faster channels-last (NHWC).

oneDNN's 2-D convolutions and pooling are markedly faster on NHWC tensors than on NCHW ones for
small images such as ``small_cnn``'s 28 px (``benchmarks/bench_score.py`` and
``benchmarks/bench_pretrain.py`` measure the paths that use it). Values are the same up to float
rounding. Used by ``medssl score`` (``InferenceEncoder``), pretraining and full
fine-tuning.
"""

from __future__ import annotations

import torch
from torch import nn


def prefers_channels_last(module: nn.Module, device: torch.device | str) -> bool:
    """True when ``module`` has 2-D convolutions and runs on the CPU."""
    return torch.device(device).type == "cpu" and any(isinstance(m, nn.Conv2d) for m in module.modules())


def channels_last_batch(x: torch.Tensor) -> torch.Tensor:
    """A 4-D float batch ``(B, C, H, W)`` in channels-last layout (same values); anything else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 and x.is_floating_point() else x
