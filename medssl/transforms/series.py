"""Random views of one series ``(C, T)``: jitter, scaling, time masking, crop + resize back to T.

Used by the ``ehr`` and ``signals`` domains (``make_augment``) for SimCLR / MICLe style
pretraining. When the trailing ``mask_channels`` channels are observation masks (EHR), jitter
and scaling touch only the value channels, masked time steps set values *and* masks to 0
("not observed"), and cropping resizes masks with nearest-neighbour so they stay binary.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from medssl.errors import ConfigError

DEFAULTS: dict[str, float] = {
    "jitter_sigma": 0.03,   # std of additive Gaussian noise (data are standardised)
    "scale_sigma": 0.1,     # std of the per-channel multiplicative factor around 1
    "mask_fraction": 0.1,   # fraction of time steps zeroed at random
    "crop_min": 0.7,        # shortest crop as a fraction of T (1.0 = no cropping)
}


class SeriesAugment:
    """Callable ``(C, T) -> (C, T)`` random view. ``mask_channels`` (int) or ``mask_half``."""

    def __init__(self, jitter_sigma: float = 0.03, scale_sigma: float = 0.1, mask_fraction: float = 0.1,
                 crop_min: float = 0.7, mask_channels: int = 0, mask_half: bool = False) -> None:
        if not 0 < crop_min <= 1 or not 0 <= mask_fraction < 1 or jitter_sigma < 0 or scale_sigma < 0:
            raise ConfigError(
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


def make_series_augment(options: dict[str, Any], mask_half: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """``SeriesAugment`` from config ``options`` (keys of ``DEFAULTS`` + ``mask_channels``)."""
    unknown = set(options) - set(DEFAULTS) - {"mask_channels"}
    if unknown:
        raise ConfigError(f"unknown series augment option(s) {sorted(unknown)}; known: {sorted(DEFAULTS) + ['mask_channels']}")
    return SeriesAugment(**{**DEFAULTS, **options}, mask_half=mask_half)
