"""Random views of grey medical images for self-supervised pretraining.

``make_image_augment(options)`` returns a per-sample ``Tensor -> Tensor`` for ``(1, S, S)`` float
images in [0, 1]; the output has the same shape and stays in [0, 1]. Steps, in order (each with its
own probability / strength in ``options``, see ``ImageAugmentOptions``):

  random resized crop -> horizontal / vertical flip -> small rotation      (torchvision v2)
  -> brightness (scale) -> contrast (scale about the mean) -> gamma         (MONAI)
  -> Gaussian blur -> Gaussian noise -> clamp to [0, 1]                     (torchvision v2)

No colour jitter (hue, saturation): the images have one channel. Defaults are mild enough for
chest X-rays from 28 to 224 px: crops keep at least half the image, rotations stay within 10 degrees.

Randomness comes only from torch's generator: MONAI's random transforms keep their own numpy
``RandomState``, which every DataLoader worker would inherit identically (same "random" views in
each worker and each epoch); they are reseeded from ``torch`` on every call, so
``torch.manual_seed`` reproduces a view and each worker (torch seeds them apart) differs.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from monai.transforms import Compose as MonaiCompose
from monai.transforms import RandAdjustContrast, RandScaleIntensity, RandScaleIntensityFixedMean
from monai.utils import convert_to_tensor
from pydantic import ValidationError
from torchvision.transforms import v2

from medssl.config import StrictConfig
from medssl.errors import ConfigError


class ImageAugmentOptions(StrictConfig):
    """Strengths and probabilities of each random step (YAML ``augment:`` keys)."""

    crop_scale: tuple[float, float] = (0.5, 1.0)  # area fraction kept by the random resized crop
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)  # aspect ratio range of the crop
    hflip_prob: float = 0.5  # left-right flip (set 0 if laterality matters to your task)
    vflip_prob: float = 0.0
    rotate_prob: float = 0.5
    rotate_degrees: float = 10.0  # rotation drawn from [-d, d]
    brightness_prob: float = 0.5
    brightness: float = 0.2  # intensities multiplied by 1 + U(-b, b)
    contrast_prob: float = 0.5
    contrast: float = 0.2  # deviations from the image mean multiplied by 1 + U(-c, c)
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)  # intensity ** gamma, gamma drawn from this range
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 1.0)  # Gaussian blur sigma in pixels
    noise_prob: float = 0.2
    noise_std: float = 0.02  # standard deviation of additive Gaussian noise (image range is 1)


def _check(opts: ImageAugmentOptions) -> None:
    for name, value in opts.model_dump().items():
        if name.endswith("_prob") and not 0.0 <= value <= 1.0:
            raise ConfigError(f"augment option {name}={value} must be a probability in [0, 1]")
    lo, hi = opts.crop_scale
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(f"augment option crop_scale={list(opts.crop_scale)} must satisfy 0 < low <= high <= 1")
    if not 0.0 < opts.crop_ratio[0] <= opts.crop_ratio[1]:
        raise ConfigError(f"augment option crop_ratio={list(opts.crop_ratio)} must satisfy 0 < low <= high")
    if not 0.0 < opts.gamma[0] <= opts.gamma[1]:
        raise ConfigError(f"augment option gamma={list(opts.gamma)} must satisfy 0 < low <= high")
    if not 0.0 < opts.blur_sigma[0] <= opts.blur_sigma[1]:
        raise ConfigError(f"augment option blur_sigma={list(opts.blur_sigma)} must satisfy 0 < low <= high")
    for name in ("rotate_degrees", "brightness", "contrast", "noise_std"):
        if getattr(opts, name) < 0:
            raise ConfigError(f"augment option {name}={getattr(opts, name)} must not be negative")
    if opts.brightness >= 1 or opts.contrast >= 1:
        raise ConfigError("augment options brightness and contrast must be below 1 (a factor 1 + U(-x, x) must stay positive)")


class ImageAugment:
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


def make_image_augment(options: dict[str, Any] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The imaging domain's ``make_augment``: ``options`` override ``ImageAugmentOptions`` defaults.

    Unknown keys or bad values raise ``ConfigError``.
    """
    try:
        opts = ImageAugmentOptions.model_validate(dict(options or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid image augment options: {problems}") from None
    _check(opts)
    return ImageAugment(opts)
