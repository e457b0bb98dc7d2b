"""The ``transactions`` domain: table rows (+ optional entity history) as float vectors.

- dataset: ``TransactionDataset`` (item layout in ``dataset.py``); preprocessing fitted on train.
- augment: ``FeatureCorruption`` with ``options`` keys ``corruption_rate`` (default 0.0 =
  identity), ``reference`` (a ``(R, W)`` tensor of training items to draw replacements from) and
  ``columns``. The identity default is deliberate: ``scarf`` and ``vime`` corrupt inside their
  ``training_loss`` from the batch's empirical marginals; set ``corruption_rate`` (e.g. 0.3) to
  train view-based methods such as ``simclr`` on tables.
- default encoder ``tabular_mlp``; ``entity_sequence`` reads the histories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from medssl.data.domains import Domain, register_domain
from medssl.data.transactions.dataset import TransactionDataset
from medssl.errors import ConfigError
from medssl.transforms.tabular import FeatureCorruption

AUGMENT_KEYS = ("corruption_rate", "reference", "columns")


def make_dataset(data_dir: Path, manifest: pd.DataFrame, preprocessing: dict[str, Any] | None) -> TransactionDataset:
    """The dataset over ``manifest``'s rows (see ``TransactionDataset``)."""
    return TransactionDataset(data_dir, manifest, preprocessing)


def make_augment(options: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-sample random feature corruption (identity unless ``corruption_rate`` > 0)."""
    unknown = sorted(set(options) - set(AUGMENT_KEYS))
    if unknown:
        raise ConfigError(f"unknown transactions augment option(s) {unknown}; known: {list(AUGMENT_KEYS)}")
    rate = float(options.get("corruption_rate", 0.0))
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"augment corruption_rate must be in [0, 1], got {rate}")
    return FeatureCorruption(rate, options.get("reference"), options.get("columns"))


def encoder_kwargs(dataset: TransactionDataset) -> dict[str, Any]:
    """``n_numeric``, ``cardinalities`` and ``history`` of the data (every tabular encoder takes them)."""
    return dataset.layout


TRANSACTIONS = register_domain(
    Domain(
        name="transactions",
        make_dataset=make_dataset,
        make_augment=make_augment,
        default_encoder="tabular_mlp",
        encoder_kwargs=encoder_kwargs,
    )
)
