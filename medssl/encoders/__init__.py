"""Backbones by domain behind one interface: ``num_features`` and ``forward(x) -> (B, F)``."""

from medssl.encoders.registry import (
    ENCODERS,
    EncoderExample,
    create_encoder,
    encoder_example,
    example_batch,
    list_encoders,
    register_encoder,
)

__all__ = [
    "ENCODERS",
    "EncoderExample",
    "create_encoder",
    "encoder_example",
    "example_batch",
    "list_encoders",
    "register_encoder",
]
