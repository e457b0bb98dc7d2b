"""The ``ehr`` domain: binned ICU stays ``(2C, T)`` (values + masks), series augmentations."""

from __future__ import annotations

from typing import Any

from medssl.data.domains import Domain, register_domain
from medssl.data.ehr.dataset import EHRDataset, make_ehr_dataset
from medssl.transforms.series import make_series_augment


def _encoder_kwargs(dataset: EHRDataset) -> dict[str, Any]:
    return {"in_channels": 2 * dataset.channels, "mask_channels": dataset.channels}


EHR = register_domain(
    Domain(
        name="ehr",
        make_dataset=make_ehr_dataset,
        make_augment=lambda options: make_series_augment(options, mask_half=True),
        default_encoder="gru",
        encoder_kwargs=_encoder_kwargs,
    )
)
