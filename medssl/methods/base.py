"""The SSL method interface and its registry.

A method is a short ``nn.Module`` built from parts (lightly style): an encoder from the encoder
registry + a projection head + a loss (from ``lightly.loss``) + the views it expects.

Batch contract (what the pair dataset yields, collated)::

    {"view1": (B, *input_shape), "view2": (B, *input_shape),
     "patient": (B,) int64 patient index, "index": (B,) int64 manifest row of view1}

``pairing`` tells the pair dataset how to draw ``view2``:
``"augment"`` (two augmentations of the same case, SimCLR/BYOL/DINO) or ``"patient"``
(another case of the same patient when there is one: MICLe).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import nn

from medssl.errors import ConfigError
from medssl.registry import Registry


class SSLMethod(nn.Module):
    """Base of every pretraining method. Subclasses set ``pairing`` and implement ``training_loss``."""

    pairing: ClassVar[str] = "augment"
    # what `medssl methods` says of the method (each method class sets them):
    family: ClassVar[str] = ""  # e.g. "contrastive", "non-contrastive", "masked modelling", "pretext task"
    summary: ClassVar[str] = ""  # one line: what the encoder learns
    lightly_parts: ClassVar[str] = ""  # the lightly losses / heads / utilities it is built from ("" = none)
    supported_domains: ClassVar[tuple[str, ...] | None] = None  # None: every domain its encoder serves

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    @property
    def pair_options(self) -> dict[str, Any]:
        """Extra keyword arguments of ``PairDataset`` (e.g. MICLe's partner rule); none by default."""
        return {}

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar loss for one batch (see the module docstring for the batch keys)."""
        raise NotImplementedError

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """Hook after each optimizer step (momentum / EMA updates for BYOL and DINO)."""


METHODS: Registry[SSLMethod] = Registry("method")


def require_sizes(method: str, **sizes: int | None) -> None:
    """Refuse head sizes below 1 (``None`` = the default): a zero-wide projection head would only
    fail deep inside the first training step. Raises ``ConfigError`` naming the option."""
    bad = {k: v for k, v in sizes.items() if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1)}
    if bad:
        raise ConfigError(
            f"{method} method_options {bad}: head sizes must be whole numbers of at least 1 "
            f"(leave them out for the defaults)"
        )


def register_method(name: str) -> Callable[[Callable[..., SSLMethod]], Callable[..., SSLMethod]]:
    """Decorator registering a method class under ``name``."""
    return METHODS.register(name)


def _load_builtins() -> None:
    import medssl.methods.builtin  # noqa: F401


def create_method(name: str, encoder: nn.Module, **kwargs: Any) -> SSLMethod:
    """Build method ``name`` around ``encoder`` (which must have ``num_features``)."""
    _load_builtins()
    return METHODS.create(name, encoder=encoder, **kwargs)


def list_methods() -> list[str]:
    """Names of every registered method."""
    _load_builtins()
    return METHODS.names()


def method_info() -> list[dict[str, str]]:
    """One row per registered method: name, family, domains ("any" when it serves every domain),
    summary and the lightly parts it uses (what ``medssl methods`` prints)."""
    rows = []
    for name in list_methods():
        cls = METHODS.get(name)
        domains = cls.supported_domains
        rows.append({"name": name, "family": cls.family, "domains": ", ".join(domains) if domains else "any",
                     "summary": cls.summary, "lightly_parts": cls.lightly_parts or "-"})
    return rows
