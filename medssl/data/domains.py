"""A domain = a reader (ingest) + a dataset + augmentations + an encoder family.

Training, evaluation and scoring are domain-agnostic: they look the domain up by the manifest's
``domain`` column and only ever see tensors, case ids and patient ids.

Dataset contract: ``dataset[i]`` is a float32 tensor of one fixed shape (the encoder's input for
manifest row ``i``): images ``(1, H, W)`` in [0, 1], series ``(C, T)``, tables ``(F,)``.
The dataset's ``preprocessing`` attribute is a JSON-able dict (image size, normalisation
statistics fitted on the train split, ...) that is saved in checkpoints and passed back to
``make_dataset`` at fine-tune / scoring time so the same preprocessing is applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import pandas as pd
import torch

from medssl.registry import Registry


class CaseDataset(Protocol):
    """What every domain dataset offers."""

    preprocessing: dict[str, Any]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class Domain:
    """Everything the domain-agnostic layers need to know about one kind of data.

    - ``make_dataset(data_dir, manifest, preprocessing)``: a ``CaseDataset`` over the rows of
      ``manifest`` (in order). ``preprocessing=None`` fits it (on the ``split == "train"`` rows
      when the manifest has a ``split`` column); a dict re-applies a saved one.
    - ``make_augment(options)``: a per-sample callable ``Tensor -> Tensor`` giving a random view.
    - ``default_encoder``: registry name of the encoder used when the config names none, or a
      callable ``preprocessing -> name`` when the choice depends on the data (image size).
    - ``encoder_kwargs(dataset)``: encoder arguments that follow from the data (channels, features).
    """

    name: str
    make_dataset: Callable[[Path, pd.DataFrame, dict[str, Any] | None], CaseDataset]
    make_augment: Callable[[dict[str, Any]], Callable[[torch.Tensor], torch.Tensor]]
    default_encoder: str | Callable[[dict[str, Any]], str]
    encoder_kwargs: Callable[[CaseDataset], dict[str, Any]]

    def encoder_for(self, preprocessing: dict[str, Any]) -> str:
        """The default encoder's registry name for data with this ``preprocessing``."""
        if callable(self.default_encoder):
            return self.default_encoder(preprocessing)
        return self.default_encoder


DOMAINS: Registry[Domain] = Registry("domain")


def register_domain(domain: Domain) -> Domain:
    """Add ``domain`` to the registry (called at import of the domain's module)."""
    DOMAINS.register(domain.name)(lambda: domain)
    return domain


def get_domain(name: str) -> Domain:
    """The registered domain called ``name`` (imports the built-in domains first)."""
    import medssl.data.builtin_domains  # noqa: F401  (registers imaging, ehr, signals, ...)

    return DOMAINS.create(name)
