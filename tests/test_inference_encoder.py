"""The inference form of an encoder (batch-norm folded, channels-last on CPU) computes the same
embeddings as the encoder, for every registered encoder, and falls back when it would not."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from medssl.encoders.inference import InferenceEncoder, fold_batch_norms
from medssl.encoders.registry import create_encoder, encoder_example, example_batch, list_encoders


def _trained_like(encoder: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch-norm non-trivial running statistics and affine weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    for m in encoder.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 2 + 0.1)
            if m.affine:
                m.weight.data.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=g))
    return encoder.eval()


def test_small_cnn_is_folded_and_channels_last_with_the_same_embeddings() -> None:
    torch.manual_seed(0)
    enc = _trained_like(create_encoder("small_cnn", in_channels=1))
    x = torch.rand(64, 1, 28, 28)
    folded, n = fold_batch_norms(enc)
    assert n == 4 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in enc.modules()) == 4  # the original is untouched
    fast = InferenceEncoder(enc, "cpu")
    assert fast.channels_last and fast.num_features == enc.num_features
    with torch.inference_mode():
        want = enc(x)
        got = fast(x)
        again = fast(x)  # after the first-batch check
    assert fast._use_fast and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again, want, rtol=1e-5, atol=1e-5)
    assert (got - want).abs().max() > 0 or n == 0  # really the folded network, not the original


@pytest.mark.parametrize("name", list_encoders())
def test_every_registered_encoder_keeps_its_embeddings(name: str) -> None:
    torch.manual_seed(1)
    enc = _trained_like(create_encoder(name, **encoder_example(name).kwargs))
    x = example_batch(name, 8)
    fast = InferenceEncoder(enc, "cpu")
    with torch.inference_mode():
        want = enc(x)
        # deep networks (ResNet-50) add up float rounding: tolerance relative to the output's scale
        torch.testing.assert_close(fast(x), want, rtol=1e-4, atol=1e-5 * max(1.0, float(want.abs().max())))
    assert fast._use_fast


class _Backwards(nn.Sequential):
    """A Sequential that runs its layers last-to-first: folding (which assumes the listed order) is wrong here."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in reversed(list(self)):
            x = layer(x)
        return x


def test_a_wrong_fold_is_caught_on_the_first_batch_and_the_encoder_used(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(2)
    enc = _Backwards(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3))
    enc.num_features = 3
    _trained_like(enc)
    x = torch.rand(6, 3, 8, 8)
    fast = InferenceEncoder(enc, "cpu")
    assert fast.n_folded == 1
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        out = fast(x)
        later = fast(x)
    assert not fast._use_fast and "differs from the encoder" in caplog.text
    with torch.inference_mode():
        assert torch.equal(out, enc(x)) and torch.equal(later, enc(x))
