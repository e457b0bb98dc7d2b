"""Random views of grey medical images for self-supervised pretraining, a whole batch at a time.

``make_image_augment(options)`` returns an ``ImageAugment``: ``augment.batch(x)`` takes a float
batch ``(B, C, H, W)`` in [0, 1] on any device and returns a batch of the same shape, dtype and
device, every image with its own random parameters; ``augment(image)`` does the same for one
image ``(C, H, W)``. Steps, in order (each with its own probability / strength in ``options``, see
``ImageAugmentOptions``; the operations are in ``medssl.transforms.image_ops``):

  random resized crop -> horizontal / vertical flip -> small rotation   (one affine resampling)
  -> brightness (scale) -> contrast (scale about the mean) -> gamma      (MONAI's formulas)
  -> clamp to [0, 1] -> Gaussian blur -> Gaussian noise -> clamp to [0, 1]

No colour jitter (hue, saturation): the images have one channel. Defaults are mild enough for
chest X-rays from 28 to 224 px: crops keep at least half the image, rotations stay within 10 degrees.

The steps and options are those of the earlier per-image path (torchvision v2 + MONAI, one image
at a time in the DataLoader); drawn per batch as tensors, the views of a 128-image batch of 28 px
images take about a millisecond instead of a few hundred. Random numbers come from torch's
generator of the batch's device (or ``generator``), so ``torch.manual_seed`` reproduces a batch
of views.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from pydantic import ValidationError

from medssl.config import StrictConfig
from medssl.errors import ConfigError
from medssl.transforms.image_ops import (
    adjust_gamma,
    affine_matrices,
    blur_kernel_size,
    crop_boxes,
    gaussian_blur,
    scale_brightness,
    scale_contrast,
    warp,
)


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
    """The random view transform (picklable). ``batch(x)`` for ``(B, C, H, W)``, call for ``(C, H, W)``."""

    def __init__(self, options: ImageAugmentOptions) -> None:
        self.options = options
        self.blur_size = blur_kernel_size(options.blur_sigma[1])

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """A random view of ``image`` ``(C, H, W)`` float in [0, 1]: same shape, values in [0, 1]."""
        if image.ndim != 3 or not image.is_floating_point():
            raise ValueError(f"image augment expects a float tensor (C, H, W), got {tuple(image.shape)} {image.dtype}")
        return self.batch(image[None])[0]

    def batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random views of ``x`` ``(B, C, H, W)`` float in [0, 1], one parameter draw per image.

        Same shape, dtype and device; values in [0, 1]. ``generator`` (on ``x``'s device) replaces
        torch's default generator.
        """
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"image augment expects a float batch (B, C, H, W), got {tuple(x.shape)} {x.dtype}")
        o = self.options
        b, _, h, w = x.shape
        dev = x.device

        def uniform(low: float, high: float, n: int | tuple[int, ...] = b) -> torch.Tensor:
            shape = (n,) if isinstance(n, int) else n
            return low + (high - low) * torch.rand(shape, generator=generator, device=dev)

        def coin(p: float) -> torch.Tensor:
            return torch.rand(b, generator=generator, device=dev) < p

        fw, fh = self._crop_sizes(b, h, w, uniform)
        boxes = crop_boxes(fw, fh, uniform(0.0, 1.0), uniform(0.0, 1.0))
        hflip, vflip = coin(o.hflip_prob), coin(o.vflip_prob)
        degrees = torch.where(coin(o.rotate_prob), uniform(-o.rotate_degrees, o.rotate_degrees), 0.0)
        out = self._geometry(x.float(), boxes, hflip, vflip, degrees)

        one = torch.ones(b, device=dev)
        out = scale_brightness(out, torch.where(coin(o.brightness_prob), 1 + uniform(-o.brightness, o.brightness), one))
        out = scale_contrast(out, torch.where(coin(o.contrast_prob), 1 + uniform(-o.contrast, o.contrast), one))
        out = adjust_gamma(out, torch.where(coin(o.gamma_prob), uniform(*o.gamma), one)).clamp_(0.0, 1.0)

        blur, sigma = coin(o.blur_prob), uniform(*o.blur_sigma)
        rows = blur.nonzero().flatten()
        if rows.numel():
            out[rows] = gaussian_blur(out[rows], sigma[rows], self.blur_size)
        rows = coin(o.noise_prob).nonzero().flatten()
        if rows.numel():
            noise = torch.randn((len(rows), *out.shape[1:]), generator=generator, device=dev, dtype=out.dtype)
            out[rows] += o.noise_std * noise
        return out.clamp_(0.0, 1.0).to(x.dtype)

    @staticmethod
    def _geometry(x: torch.Tensor, boxes: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor,
                  degrees: torch.Tensor) -> torch.Tensor:
        """Crop, flips and rotation of ``x`` (B, C, H, W): one affine resampling per image; images
        kept whole and unrotated are only flipped (exactly, no resampling)."""
        whole = (boxes[:, 2] == 1) & (boxes[:, 3] == 1) & (degrees == 0)
        if not bool(whole.any()):
            return warp(x, affine_matrices(boxes, hflip, vflip, degrees, *x.shape[-2:]))
        exact, resample = whole.nonzero().flatten(), (~whole).nonzero().flatten()
        out = x.clone()
        if resample.numel():
            theta = affine_matrices(boxes[resample], hflip[resample], vflip[resample], degrees[resample], *x.shape[-2:])
            out[resample] = warp(x[resample], theta)
        if exact.numel():
            part = x[exact]
            part = torch.where(hflip[exact, None, None, None], part.flip(-1), part)
            out[exact] = torch.where(vflip[exact, None, None, None], part.flip(-2), part)
        return out

    def _crop_sizes(self, b: int, h: int, w: int, uniform: Callable[..., torch.Tensor], attempts: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop width and height as fractions of the image's, ``(B,)`` each (torchvision's rule).

        Area fraction from ``crop_scale``, log aspect ratio uniform over ``crop_ratio``; the first
        of ``attempts`` draws that fits inside the image is kept, else the whole image.
        """
        o = self.options
        area = uniform(*o.crop_scale, n=(b, attempts))
        ratio = torch.exp(uniform(math.log(o.crop_ratio[0]), math.log(o.crop_ratio[1]), n=(b, attempts)))
        fw = torch.sqrt(area * ratio * h / w)  # crop width / image width
        fh = torch.sqrt(area / ratio * w / h)
        fits = (fw <= 1) & (fh <= 1)
        first = fits.to(torch.int8).argmax(dim=1, keepdim=True)  # first fitting attempt (0 if none)
        any_fit = fits.any(dim=1)
        fw = torch.where(any_fit, fw.gather(1, first)[:, 0], 1.0)
        fh = torch.where(any_fit, fh.gather(1, first)[:, 0], 1.0)
        return fw, fh


def make_image_augment(options: dict[str, Any] | None = None) -> ImageAugment:
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
