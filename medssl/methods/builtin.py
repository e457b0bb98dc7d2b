"""Imports every built-in method module so each registers itself. Add a line per new module."""

from __future__ import annotations

import importlib

_MODULES: tuple[str, ...] = (
    "medssl.methods.simclr",
    "medssl.methods.byol",
    "medssl.methods.dino",
    "medssl.methods.micle",
    "medssl.methods.scarf",
    "medssl.methods.vime",
    "medssl.methods.ts2vec",
    "medssl.methods.moco",
    "medssl.methods.swav",
    "medssl.methods.barlow_twins",
    "medssl.methods.vicreg",
    "medssl.methods.simmim",
    "medssl.methods.rotation",
    "medssl.methods.jigsaw",
    "medssl.methods.denoising_ae",
    "medssl.methods.cpc",
    "medssl.methods.masked_ehr",
)

for _name in _MODULES:
    importlib.import_module(_name)
