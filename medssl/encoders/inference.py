"""Encoders in inference form: the same function, computed faster (used by ``medssl score``).

``InferenceEncoder(encoder, device)`` wraps a trained encoder for batch inference:

1. **Batch-norm folding.** In every ``nn.Sequential``, a ``Conv1d/2d/3d`` or ``Linear`` directly
   followed by the matching ``BatchNorm`` becomes one layer whose weights absorb the normalisation
   (``torch.nn.utils.fusion``), the same rewrite ONNX/TorchScript exporters do. In eval mode
   batch-norm is a fixed affine map, so the outputs do not change beyond float rounding.
2. **Channels-last layout on CPU** for encoders with 2-D convolutions (``medssl.encoders.layout``).
3. **A safety check.** The first batch is also run, for its first few cases, through the original
   encoder; if the two disagree beyond float rounding the wrapper logs a warning and uses the
   original from then on. So an unusual encoder can never get wrong embeddings, only slower ones.

``benchmarks/bench_score.py`` measures the speed-up (``inference_form``);
``tests/test_inference_encoder.py`` holds the embeddings equal to the plain forward's within float
rounding.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from medssl.encoders.layout import channels_last_batch, prefers_channels_last

log = logging.getLogger(__name__)

_CONV_BN = ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d))
CHECK_CASES = 4  # cases of the first batch run through both encoders
RTOL, ATOL = 1e-4, 1e-5  # relative to the embeddings' scale: float rounding passes, a real change does not


def fold_batch_norms(encoder: nn.Module) -> tuple[nn.Module, int]:
    """``(a copy of encoder in eval mode with Sequential (Conv|Linear, BatchNorm) pairs folded,
    number of pairs folded)``. The input module is not modified."""
    folded = copy.deepcopy(encoder).eval()
    n = 0
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            layer, norm = module._modules[first], module._modules[second]
            if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or norm.running_mean is None:
                continue  # batch statistics at inference (track_running_stats=False): not a fixed map
            if any(type(layer) is conv and type(norm) is bn for conv, bn in _CONV_BN):
                module._modules[first] = fuse_conv_bn_eval(layer, norm)
            elif type(layer) is nn.Linear and type(norm) is nn.BatchNorm1d:
                module._modules[first] = fuse_linear_bn_eval(layer, norm)
            else:
                continue
            module._modules[second] = nn.Identity()
            n += 1
    return folded, n


class InferenceEncoder(nn.Module):
    """``(B, *input_shape)`` -> ``(B, num_features)``, the wrapped encoder's function in inference form.

    Call it under ``torch.inference_mode()``; ``original`` keeps the encoder as given.
    """

    def __init__(self, encoder: nn.Module, device: torch.device | str = "cpu") -> None:
        super().__init__()
        device = torch.device(device)
        self.original = encoder.eval().to(device)
        self.num_features = int(encoder.num_features)
        fast, self.n_folded = fold_batch_norms(self.original)
        self.channels_last = prefers_channels_last(fast, device)
        self.fast = fast.to(memory_format=torch.channels_last) if self.channels_last else fast
        self._checked = False
        self._use_fast = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *input_shape)`` -> ``(B, num_features)``."""
        if not self._use_fast:
            return self.original(x)
        out = self.fast(self._layout(x))
        if not self._checked:
            self._checked = True
            want = self.original(x[:CHECK_CASES])
            got = out[:CHECK_CASES]
            scale = float(want.abs().max()) if want.numel() else 0.0
            if not torch.allclose(got.float(), want.float(), rtol=RTOL, atol=ATOL * max(scale, 1.0)):
                log.warning(
                    "the inference form of encoder %s differs from the encoder (max |diff| %.3g); "
                    "scoring with the plain encoder instead", type(self.original).__name__,
                    float((got.float() - want.float()).abs().max()),
                )
                self._use_fast = False
                return self.original(x)
        return out

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return channels_last_batch(x) if self.channels_last else x
