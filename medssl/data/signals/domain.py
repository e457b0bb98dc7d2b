"""The ``signals`` domain: fixed windows ``(C, T)`` (ECG beats, sensor windows), series augmentations."""

from __future__ import annotations

from typing import Any

from medssl.data.domains import Domain, register_domain
from medssl.data.signals.dataset import SignalDataset, make_signal_dataset
from medssl.transforms.series import make_series_augment


def _encoder_kwargs(dataset: SignalDataset) -> dict[str, Any]:
    return {"in_channels": dataset.channels}


SIGNALS = register_domain(
    Domain(
        name="signals",
        make_dataset=make_signal_dataset,
        make_augment=make_series_augment,
        default_encoder="ts2vec_tcn",
        encoder_kwargs=_encoder_kwargs,
    )
)
