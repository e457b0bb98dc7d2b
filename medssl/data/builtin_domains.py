"""Imports every built-in domain module so each registers itself with ``DOMAINS``.

Add a line here when a new domain lands.
"""

from __future__ import annotations

import importlib

_MODULES: tuple[str, ...] = (
    "medssl.data.imaging.domain",
    "medssl.data.ehr.domain",
    "medssl.data.signals.domain",
    "medssl.data.transactions.domain",
)

for _name in _MODULES:
    importlib.import_module(_name)
