"""Batched image operations with one set of parameters per sample, in plain torch.

Every function takes a float batch ``(B, C, H, W)`` (any device) and per-sample parameters as
``(B,)`` tensors on the same device, and returns a new ``(B, C, H, W)`` batch. Nothing here draws
random numbers: ``medssl.transforms.image.ImageAugment`` draws the parameters and calls these,
so each step can be checked by hand with fixed parameters.

Geometry is one resampling per image: the random resized crop, the flips and the rotation are
composed into one affine map (``affine_matrices``) and applied with ``grid_sample`` (``warp``).
Coordinates are ``grid_sample``'s normalised ones (``align_corners=False``): ``-1`` and ``1`` are
the outer edges of the first and last pixel, ``x`` to the right, ``y`` down.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def crop_boxes(
    fraction_w: torch.Tensor, fraction_h: torch.Tensor, offset_x: torch.Tensor, offset_y: torch.Tensor
) -> torch.Tensor:
    """``(B, 4)`` crop boxes ``(centre_x, centre_y, fraction_w, fraction_h)`` in normalised units.

    ``fraction_w``, ``fraction_h`` (B,): the crop's width and height as fractions of the image's
    (in (0, 1]); ``offset_x``, ``offset_y`` (B,) in [0, 1]: where the crop sits between the left
    (top) edge (0) and the right (bottom) edge (1).
    """
    cx = (2 * offset_x - 1) * (1 - fraction_w)
    cy = (2 * offset_y - 1) * (1 - fraction_h)
    return torch.stack([cx, cy, fraction_w, fraction_h], dim=1)


def affine_matrices(
    boxes: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor, degrees: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """``(B, 2, 3)`` maps from output to input coordinates: crop ``boxes`` -> flips -> rotation.

    As torchvision's ``RandomResizedCrop`` -> ``RandomHorizontalFlip`` -> ``RandomVerticalFlip`` ->
    ``RandomRotation`` (counter-clockwise by ``degrees``), composed into one map. ``boxes`` (B, 4)
    from ``crop_boxes``; ``hflip``, ``vflip`` (B,) bool; ``degrees`` (B,). One difference: where the
    rotated crop's corners leave the crop but not the image, they show the image around the crop
    (torchvision fills them with 0); outside the image they are 0 in both.
    """
    rad = torch.deg2rad(degrees.to(boxes.dtype))
    cos, sin = torch.cos(rad), torch.sin(rad)
    aspect = width / height
    # rotation in pixel space, written in normalised coordinates (non-square images stay undistorted)
    rot = torch.stack([torch.stack([cos, -sin / aspect], 1), torch.stack([sin * aspect, cos], 1)], 1)  # (B, 2, 2)
    sign_x = 1.0 - 2.0 * hflip.to(boxes.dtype)
    sign_y = 1.0 - 2.0 * vflip.to(boxes.dtype)
    scale = torch.stack([boxes[:, 2] * sign_x, boxes[:, 3] * sign_y], 1)  # crop size and flips, (B, 2)
    linear = scale[:, :, None] * rot
    return torch.cat([linear, boxes[:, :2, None]], dim=2)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, height, width), align_corners=False)`` as broadcast
    multiply-adds (``(B, H, W, 2)``; cheaper on the CPU than its batched matrix product)."""
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    t = theta[:, :, :, None, None]  # (B, 2, 3, 1, 1)
    grid = t[:, :, 0] * xs[None, None, None, :] + t[:, :, 1] * ys[None, None, :, None] + t[:, :, 2]  # (B, 2, H, W)
    return grid.permute(0, 2, 3, 1)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W) resampled through ``theta`` (B, 2, 3), bilinear.

    Points inside the image's outer edge read the nearest edge pixel where they fall between it
    and the edge (as ``F.interpolate`` and torchvision's resize do); points outside the image are 0
    (torchvision's rotation fill).
    """
    grid = affine_grid(theta.to(x.dtype), x.shape[-2], x.shape[-1])  # (B, H, W, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # only maps whose corners leave the image (rotations) can reach outside it: the grid is convex
    corners = theta[:, :, :2].abs().sum(dim=2) + theta[:, :, 2].abs()  # (B, 2) bound of |coordinate|
    rows = (corners > 1.0).any(dim=1).nonzero().flatten()
    if rows.numel():
        outside = grid[rows].abs().amax(dim=-1) > 1.0 + 1e-6  # (R, H, W)
        out[rows] = out[rows].masked_fill_(outside[:, None], 0.0)
    return out


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, 1, 1, 1)


def scale_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``x * factor`` per sample (MONAI ``ScaleIntensity``; ``factor`` (B,), 1 = unchanged)."""
    return x * _per_sample(factor).to(x.dtype)


def scale_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Deviations from each image's mean scaled by ``factor`` (B,) (MONAI ``ScaleIntensityFixedMean``)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_sample(factor).to(x.dtype) + mean


def adjust_gamma(x: torch.Tensor, gamma: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """MONAI ``AdjustContrast``: each image rescaled to [0, 1] by its own min and max, raised to
    ``gamma`` (B,), scaled back. Images whose gamma is exactly 1 are returned unchanged."""
    rows = (gamma != 1).nonzero().flatten()
    if rows.numel() == 0:
        return x
    part = x[rows]
    low = part.amin(dim=(1, 2, 3), keepdim=True)
    span = part.amax(dim=(1, 2, 3), keepdim=True) - low
    unit = ((part - low) / (span + eps)).clamp_min_(1e-30)  # v ** g as exp(g log v): 0 stays (nearly) 0
    adjusted = torch.exp(unit.log_() * _per_sample(gamma[rows]).to(x.dtype)) * span + low
    return x.index_copy(0, rows, adjusted)


def gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, size)`` normalised 1-D Gaussian kernels (torchvision's ``GaussianBlur`` formula)."""
    half = (size - 1) / 2
    t = torch.linspace(-half, half, size, device=sigma.device, dtype=sigma.dtype)
    pdf = torch.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
    return pdf / pdf.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Separable Gaussian blur of each image of ``x`` (B, C, H, W) with its own ``sigma`` (B,).

    ``size`` is the (odd) kernel length; borders are reflected (as torchvision's), or replicated
    when the image is too small to reflect ``size // 2`` pixels. Each pass is a sum of ``size``
    shifted copies weighted per image (cheaper than a grouped convolution for small kernels).
    """
    _, _, h, w = x.shape
    pad = size // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    k = gaussian_kernels(sigma.to(x.dtype), size)[:, :, None, None, None]  # (B, size, 1, 1, 1)
    y = F.pad(x, (pad, pad, 0, 0), mode=mode)
    x = sum(k[:, i] * y[..., i : i + w] for i in range(size))  # along W
    y = F.pad(x, (0, 0, pad, pad), mode=mode)
    return sum(k[:, i] * y[..., i : i + h, :] for i in range(size))  # along H


def blur_kernel_size(max_sigma: float) -> int:
    """Odd kernel length covering +-3 sigma (the size the per-sample path used)."""
    return 2 * math.ceil(3 * max_sigma) + 1
