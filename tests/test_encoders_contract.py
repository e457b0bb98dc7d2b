"""Contract of every registered encoder and every (encoder, method) pair (timm-style).

Forward + backward on CPU, right shapes, no NaN, and every trainable parameter gets a gradient.
A method may declare ``supported_domains`` (a tuple of domain names); pairs with an encoder of
another domain are skipped with that reason.
"""

from __future__ import annotations

import pytest
import torch

from medssl.encoders import create_encoder, encoder_example, example_batch, list_encoders
from medssl.methods import create_method, list_methods
from medssl.methods.base import METHODS

BATCH = 4  # batch-norm heads need more than one sample
HEAVY = {"resnet50"}  # 23M parameters: its method pairs take ~20-50 s each on 2 busy cores


@pytest.mark.parametrize("name", list_encoders())
def test_encoder_shape_backward_no_nan(name: str) -> None:
    torch.manual_seed(0)
    ex = encoder_example(name)
    enc = create_encoder(name, **ex.kwargs)
    out = enc(example_batch(name, BATCH))
    assert out.shape == (BATCH, enc.num_features)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def _pairs() -> list:
    return [
        pytest.param(e, m, marks=[pytest.mark.slow] if e in HEAVY else [])
        for e in list_encoders()
        for m in list_methods()
    ]


@pytest.mark.parametrize(("encoder_name", "method_name"), _pairs())
def test_method_on_encoder_forward_backward(encoder_name: str, method_name: str) -> None:
    ex = encoder_example(encoder_name)
    supported = getattr(METHODS.get(method_name), "supported_domains", None)
    if supported is not None and ex.domain not in supported:
        pytest.skip(f"{method_name} supports {supported}, {encoder_name} is a {ex.domain} encoder")
    torch.manual_seed(0)
    method = create_method(method_name, create_encoder(encoder_name, **ex.kwargs))
    x = example_batch(encoder_name, BATCH)
    batch = {
        "view1": x,
        "view2": x + 0.1 * torch.randn_like(x),
        "patient": torch.tensor([0, 0, 1, 2]),
        "index": torch.arange(BATCH),
    }
    loss = method.training_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in method.parameters() if p.grad is not None)
    method.on_train_step_end(1, 10)
    assert method.encoder(x).shape == (BATCH, method.encoder.num_features)


def test_resnet_stems_and_feature_sizes() -> None:
    r18 = create_encoder("resnet18", in_channels=3)
    assert r18.num_features == 512 and r18(torch.rand(2, 3, 64, 64)).shape == (2, 512)
    small = create_encoder("resnet18", in_channels=1, small_input=True)
    assert small.net.conv1.stride == (1, 1) and small(torch.rand(2, 1, 28, 28)).shape == (2, 512)
    assert create_encoder("resnet50", in_channels=1).num_features == 2048
    cnn = create_encoder("small_cnn", in_channels=1, width=8)
    assert cnn.num_features == 32 and cnn(torch.rand(2, 1, 64, 64)).shape == (2, 32)
