"""Lazy re-exports for package ``__init__`` files (PEP 562).

Building the CLI parser imports many packages for their constants; re-exporting names lazily
keeps ``medssl --help`` from importing torch, pandas, scikit-learn and SQLAlchemy up front.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``; ``exports`` maps a name to its defining module."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__, sorted(exports)
