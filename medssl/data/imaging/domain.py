"""Registers the "imaging" domain: DICOM / PNG / JPEG / npz images as ``(1, S, S)`` in [0, 1]."""

from __future__ import annotations

from typing import Any, Callable

import torch

from medssl.data.domains import CaseDataset, Domain, register_domain
from medssl.data.imaging.dataset import make_imaging_dataset

SMALL_IMAGE_MAX = 64  # images up to this side get the small CNN, larger ones a ResNet-18


def default_encoder_for(preprocessing: dict[str, Any]) -> str:
    """The encoder that suits the image size: "small_cnn" for S <= 64 (MedMNIST), else "resnet18"."""
    return "small_cnn" if int(preprocessing["size"]) <= SMALL_IMAGE_MAX else "resnet18"


def make_imaging_augment(options: dict[str, Any] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``medssl.transforms.image.make_image_augment``, imported on first use: the augmentations
    (MONAI) are only needed for training, and scoring starts seconds faster without them."""
    from medssl.transforms.image import make_image_augment

    return make_image_augment(options)


def imaging_encoder_kwargs(dataset: CaseDataset) -> dict[str, Any]:
    """Encoder arguments that follow from the data: one grey channel."""
    return {"in_channels": 1}


IMAGING = register_domain(
    Domain(
        name="imaging",
        make_dataset=make_imaging_dataset,
        make_augment=make_imaging_augment,
        default_encoder=default_encoder_for,
        encoder_kwargs=imaging_encoder_kwargs,
    )
)
