"""The encoder registry: ``create_encoder(name, **kw)`` and ``list_encoders()``.

Every encoder has the same face (timm style): an attribute ``num_features`` and
``forward(x) -> (B, num_features)``. Each registration also gives an *example*
(constructor kwargs and one input sample's shape) that the contract tests use to check
shape, backward pass and no NaN for every registered encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from medssl.registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")


@dataclass(frozen=True)
class EncoderExample:
    """Small constructor kwargs and the shape of one input sample (no batch dimension)."""

    kwargs: dict[str, Any]
    input_shape: tuple[int, ...]
    domain: str


EXAMPLES: dict[str, EncoderExample] = {}


def register_encoder(name: str, example: EncoderExample) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register an encoder class/factory under ``name`` with its contract example."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ENCODERS.register(name)(factory)
        EXAMPLES[name] = example
        return factory

    return wrap


def _load_builtins() -> None:
    import medssl.encoders.builtin  # noqa: F401


def create_encoder(name: str, **kwargs: Any) -> nn.Module:
    """Build the encoder registered as ``name``; it has ``num_features``."""
    _load_builtins()
    model = ENCODERS.create(name, **kwargs)
    if not isinstance(getattr(model, "num_features", None), int):
        raise TypeError(f"encoder {name!r} must set an int attribute num_features")
    return model


def list_encoders() -> list[str]:
    """Names of every registered encoder."""
    _load_builtins()
    return ENCODERS.names()


def encoder_example(name: str) -> EncoderExample:
    """The contract example of encoder ``name``."""
    _load_builtins()
    ENCODERS.get(name)  # raises a did-you-mean error for unknown names
    return EXAMPLES[name]


def example_batch(name: str, batch_size: int = 2) -> torch.Tensor:
    """A random batch ``(batch_size, *input_shape)`` fit for encoder ``name``."""
    ex = encoder_example(name)
    return torch.rand(batch_size, *ex.input_shape)
