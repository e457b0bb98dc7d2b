"""Imports every built-in encoder module so each registers itself. Add a line per new module."""

from __future__ import annotations

import importlib

_MODULES: tuple[str, ...] = (
    "medssl.encoders.small_cnn",
    "medssl.encoders.image_resnet",
    "medssl.encoders.tabular_mlp",
    "medssl.encoders.ft_transformer",
    "medssl.encoders.sequence",
    "medssl.encoders.series_tcn",
    "medssl.encoders.series_gru",
)

for _name in _MODULES:
    importlib.import_module(_name)
