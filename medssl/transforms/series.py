"""Random views of series ``(C, T)``, a whole batch at a time: crop + resize back to T, per-channel
scaling, jitter, time masking.

Used by the ``ehr`` and ``signals`` domains (``make_augment``) for SimCLR / MICLe style
pretraining. ``augment.batch(x)`` takes ``(B, C, T)`` on any device and draws every series' own
parameters (crop length and start, scaling factors, noise, masked steps) as tensors;
``augment(x)`` does the same for one series ``(C, T)``. When the trailing ``mask_channels``
channels are observation masks (EHR), jitter and scaling touch only the value channels, masked
time steps set values *and* masks to 0 ("not observed"), and cropping resizes masks with
nearest-neighbour so they stay binary.

The crop + resize equals ``F.interpolate`` of the crop (``linear`` with ``align_corners=True`` for
values, ``nearest`` for masks; see ``crop_resize``), computed for every series of the batch at once
by gathering the two neighbouring samples of each output step (``crop_resize_batch``).
"""

from __future__ import annotations

from typing import Any

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
    """Random views: ``batch(x)`` for ``(B, C, T)``, call for ``(C, T)``. ``mask_channels`` (int) or ``mask_half``."""

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
        return self.batch(x[None])[0]

    def batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random views of ``x`` (B, C, T) float, one parameter draw per series; same shape and device.

        ``generator`` (on ``x``'s device) replaces torch's default generator.
        """
        if x.ndim != 3 or not x.is_floating_point():
            raise ValueError(f"series augment expects a float batch (B, C, T), got {tuple(x.shape)} {x.dtype}")
        b, c, t = x.shape
        dev = x.device
        n_mask = c // 2 if self.mask_half else self.mask_channels
        starts, lengths = crop_bounds(b, t, self.crop_min, generator, dev)
        values = crop_resize_batch(x[:, : c - n_mask], starts, lengths, mode="linear")
        masks = crop_resize_batch(x[:, c - n_mask:], starts, lengths, mode="nearest")
        if self.scale_sigma:
            values = values * (1 + self.scale_sigma * torch.randn(b, values.shape[1], 1, generator=generator, device=dev))
        if self.jitter_sigma:
            values = values + self.jitter_sigma * torch.randn(values.shape, generator=generator, device=dev)
        if n_mask and n_mask == values.shape[1]:
            values = values * masks  # unobserved entries stay 0
        out = torch.cat([values, masks], dim=1)
        if self.mask_fraction:
            keep = torch.rand(b, 1, t, generator=generator, device=dev) >= self.mask_fraction
            out = out * keep.to(out.dtype)
        return out


def crop_bounds(b: int, t: int, crop_min: float, generator: torch.Generator | None = None,
                device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(starts, lengths)``, ``(B,)`` int64 each: crop lengths uniform over whole numbers in
    ``[max(2, round(crop_min * T)), T]`` (all ``T`` when ``crop_min`` is 1), starts uniform over
    the positions where the crop fits."""
    if crop_min >= 1:
        zeros = torch.zeros(b, dtype=torch.int64, device=device)
        return zeros, zeros + t
    shortest = min(t, max(2, int(round(crop_min * t))))
    lengths = shortest + (torch.rand(b, generator=generator, device=device) * (t - shortest + 1)).long().clamp_max(t - shortest)
    room = t - lengths + 1
    starts = (torch.rand(b, generator=generator, device=device) * room).long().minimum(room - 1)
    return starts, lengths


def crop_resize_batch(x: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor, mode: str = "linear") -> torch.Tensor:
    """``x[b, :, starts[b] : starts[b] + lengths[b]]`` resized back to T steps, for every row of ``x`` (B, C, T).

    ``linear``: output step ``i`` reads position ``start + i * (length - 1) / (T - 1)`` (as
    ``F.interpolate(..., mode="linear", align_corners=True)``); ``nearest``: step ``i`` reads
    ``start + floor(i * length / T)`` (as ``mode="nearest"``). Rows whose crop is the whole
    series come back unchanged.
    """
    b, c, t = x.shape
    if c == 0 or t == 0:
        return x.clone()
    steps = torch.arange(t, device=x.device)
    if mode == "nearest":
        index = starts[:, None] + (steps[None, :] * lengths[:, None]) // t  # (B, T)
        return x.gather(2, index[:, None, :].expand(b, c, t))
    if t == 1:
        return x.clone()
    pos = steps[None, :].to(x.dtype) * ((lengths - 1).to(x.dtype) / (t - 1))[:, None]  # (B, T) within the crop
    low = pos.floor().long().clamp_max(lengths[:, None] - 1)
    high = (low + 1).minimum(lengths[:, None] - 1)
    weight = (pos - low.to(x.dtype))[:, None, :]
    left = x.gather(2, (starts[:, None] + low)[:, None, :].expand(b, c, t))
    right = x.gather(2, (starts[:, None] + high)[:, None, :].expand(b, c, t))
    out = left + weight * (right - left)
    whole = (lengths == t)[:, None, None]
    return torch.where(whole, x, out)


def crop_resize(x: torch.Tensor, bounds: tuple[int, int], mode: str = "linear") -> torch.Tensor:
    """``x[:, start:end]`` of ``x`` (C, T) resized back to T steps (``linear`` or ``nearest``):
    the one-series reference of ``crop_resize_batch`` (``F.interpolate``)."""
    t = x.shape[-1]
    start, end = bounds
    if (start, end) == (0, t) or x.shape[0] == 0:
        return x.clone()
    piece = x[None, :, start:end]
    if mode == "linear":
        return F.interpolate(piece, size=t, mode="linear", align_corners=True)[0]
    return F.interpolate(piece, size=t, mode="nearest")[0]


def make_series_augment(options: dict[str, Any], mask_half: bool = False) -> SeriesAugment:
    """``SeriesAugment`` from config ``options`` (keys of ``DEFAULTS`` + ``mask_channels``)."""
    unknown = set(options) - set(DEFAULTS) - {"mask_channels"}
    if unknown:
        raise ConfigError(f"unknown series augment option(s) {sorted(unknown)}; known: {sorted(DEFAULTS) + ['mask_channels']}")
    return SeriesAugment(**{**DEFAULTS, **options}, mask_half=mask_half)
