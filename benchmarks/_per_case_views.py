"""Today's per-case view path, kept as a baseline for ``bench_pretrain.py`` (not product code).

Until issue 15, ``medssl pretrain`` drew every view one case at a time inside the DataLoader:
``PerCaseImageAugment`` (torchvision v2 geometry + MONAI intensity, per image) and
``PerCaseSeriesAugment`` (per series). This is that code, verbatim from
``medssl/transforms/image.py`` and ``medssl/transforms/series.py`` at commit 5aca167, so the
benchmark can measure the old path against the batched one in the same run.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import Compose as MonaiCompose
from monai.transforms import RandAdjustContrast, RandScaleIntensity, RandScaleIntensityFixedMean
from monai.utils import convert_to_tensor
from torchvision.transforms import v2

from medssl.transforms.image import ImageAugmentOptions
from medssl.transforms.series import DEFAULTS as SERIES_DEFAULTS


class PerCaseImageAugment:
    """The random view transform; picklable, so DataLoader workers can use it."""

    def __init__(self, options: ImageAugmentOptions) -> None:
        self.options = options
        o = options
        self._intensity = MonaiCompose(
            [
                RandScaleIntensity(factors=o.brightness, prob=o.brightness_prob),
                RandScaleIntensityFixedMean(prob=o.contrast_prob, factors=o.contrast, fixed_mean=True),
                RandAdjustContrast(prob=o.gamma_prob, gamma=o.gamma),
            ]
        )
        kernel = 2 * math.ceil(3 * o.blur_sigma[1]) + 1
        self._blur_noise = v2.Compose(
            [
                v2.RandomApply([v2.GaussianBlur(kernel_size=kernel, sigma=o.blur_sigma)], p=o.blur_prob),
                v2.RandomApply([v2.GaussianNoise(sigma=o.noise_std, clip=False)], p=o.noise_prob),
            ]
        )
        self._geometry: dict[tuple[int, int], v2.Compose] = {}  # built per image size on first use

    def _geometry_for(self, size: tuple[int, int]) -> v2.Compose:
        if size not in self._geometry:
            o = self.options
            self._geometry[size] = v2.Compose(
                [
                    v2.RandomResizedCrop(size, scale=o.crop_scale, ratio=o.crop_ratio, antialias=True),
                    v2.RandomHorizontalFlip(p=o.hflip_prob),
                    v2.RandomVerticalFlip(p=o.vflip_prob),
                    v2.RandomApply(
                        [v2.RandomRotation(o.rotate_degrees, interpolation=v2.InterpolationMode.BILINEAR, fill=0.0)],
                        p=o.rotate_prob,
                    ),
                ]
            )
        return self._geometry[size]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """A random view of ``image`` ``(1, S, S)`` float in [0, 1]: same shape, values in [0, 1]."""
        if image.ndim != 3 or not image.is_floating_point():
            raise ValueError(f"image augment expects a float tensor (C, H, W), got {tuple(image.shape)} {image.dtype}")
        out = self._geometry_for((int(image.shape[-2]), int(image.shape[-1])))(image)
        self._intensity.set_random_state(seed=int(torch.randint(0, 2**31 - 1, (1,))))
        out = convert_to_tensor(self._intensity(out), track_meta=False).clamp(0.0, 1.0)
        out = self._blur_noise(out)
        return out.clamp(0.0, 1.0).to(image.dtype).contiguous()


class PerCaseSeriesAugment:
    """Callable ``(C, T) -> (C, T)`` random view. ``mask_channels`` (int) or ``mask_half``."""

    def __init__(self, jitter_sigma: float = 0.03, scale_sigma: float = 0.1, mask_fraction: float = 0.1,
                 crop_min: float = 0.7, mask_channels: int = 0, mask_half: bool = False) -> None:
        if not 0 < crop_min <= 1 or not 0 <= mask_fraction < 1 or jitter_sigma < 0 or scale_sigma < 0:
            raise ValueError(
                f"series augment needs 0 < crop_min <= 1, 0 <= mask_fraction < 1 and sigmas >= 0; got "
                f"crop_min={crop_min}, mask_fraction={mask_fraction}, jitter_sigma={jitter_sigma}, scale_sigma={scale_sigma}"
            )
        self.jitter_sigma, self.scale_sigma = jitter_sigma, scale_sigma
        self.mask_fraction, self.crop_min = mask_fraction, crop_min
        self.mask_channels, self.mask_half = mask_channels, mask_half

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """One random view of ``x`` (C, T) float32, same shape."""
        c, t = x.shape
        n_mask = c // 2 if self.mask_half else self.mask_channels
        bounds = _crop_bounds(t, self.crop_min)
        values = crop_resize(x[: c - n_mask], bounds, mode="linear")
        masks = crop_resize(x[c - n_mask:], bounds, mode="nearest")
        values = values * (1 + self.scale_sigma * torch.randn(values.shape[0], 1))
        values = values + self.jitter_sigma * torch.randn_like(values)
        if n_mask and n_mask == values.shape[0]:
            values = values * masks  # unobserved entries stay 0
        keep = (torch.rand(t) >= self.mask_fraction).to(x.dtype)
        return torch.cat([values * keep, masks * keep], dim=0)


def _crop_bounds(t: int, crop_min: float) -> tuple[int, int]:
    length = int(torch.randint(max(2, int(round(crop_min * t))), t + 1, (1,)).item()) if crop_min < 1 else t
    start = int(torch.randint(0, t - length + 1, (1,)).item())
    return start, start + length


def crop_resize(x: torch.Tensor, bounds: tuple[int, int], mode: str = "linear") -> torch.Tensor:
    """``x[:, start:end]`` of ``x`` (C, T) resized back to T steps (``linear`` or ``nearest``)."""
    t = x.shape[-1]
    start, end = bounds
    if (start, end) == (0, t) or x.shape[0] == 0:
        return x.clone()
    piece = x[None, :, start:end]
    if mode == "linear":
        return F.interpolate(piece, size=t, mode="linear", align_corners=True)[0]
    return F.interpolate(piece, size=t, mode="nearest")[0]


def per_case_image_augment(options: dict[str, Any] | None = None) -> PerCaseImageAugment:
    """The old imaging ``make_augment`` (same option keys and defaults)."""
    return PerCaseImageAugment(ImageAugmentOptions.model_validate(dict(options or {})))


def per_case_series_augment(options: dict[str, Any], mask_half: bool = False) -> PerCaseSeriesAugment:
    """The old series ``make_augment`` (same option keys and defaults)."""
    return PerCaseSeriesAugment(**{**SERIES_DEFAULTS, **options}, mask_half=mask_half)
