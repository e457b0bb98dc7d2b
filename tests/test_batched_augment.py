"""Batched augmentation (images, series, table rows), decoded cases held in memory, views in the module.

Hand-checked cases use fixed parameters through ``medssl.transforms.image_ops`` and
``crop_resize_batch``; references are the libraries the per-case path used (torchvision's blur,
MONAI's contrast formulas, ``F.interpolate``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.transforms import AdjustContrast, ScaleIntensityFixedMean
from torchvision.transforms.v2 import functional as TF

from medssl.data.in_memory import InMemoryCases, hold_in_memory
from medssl.data.pairs import PairDataset
from medssl.encoders import create_encoder
from medssl.methods import create_method
from medssl.train.lightning_module import PretrainModule
from medssl.transforms.batched import batched
from medssl.transforms.image import make_image_augment
from medssl.transforms.image_ops import (
    adjust_gamma,
    affine_matrices,
    crop_boxes,
    gaussian_blur,
    scale_brightness,
    scale_contrast,
    warp,
)
from medssl.transforms.series import crop_bounds, crop_resize, crop_resize_batch, make_series_augment
from medssl.transforms.tabular import FeatureCorruption

NONE = {"hflip_prob": 0, "rotate_prob": 0, "brightness_prob": 0, "contrast_prob": 0, "gamma_prob": 0,
        "blur_prob": 0, "noise_prob": 0, "crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0]}


def _geometry(b: int, fw: float = 1.0, fh: float = 1.0, ox: float = 0.5, oy: float = 0.5, hflip: bool = False,
              vflip: bool = False, degrees: float = 0.0, h: int = 4, w: int = 4) -> torch.Tensor:
    full = torch.ones(b)
    boxes = crop_boxes(fw * full, fh * full, ox * full, oy * full)
    return affine_matrices(boxes, torch.full((b,), hflip), torch.full((b,), vflip), torch.full((b,), degrees), h, w)


def test_flips_and_quarter_turns_by_hand() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    expected_hflip = torch.tensor([[3.0, 2, 1, 0], [7, 6, 5, 4], [11, 10, 9, 8], [15, 14, 13, 12]])
    torch.testing.assert_close(warp(x, _geometry(1, hflip=True))[0, 0], expected_hflip, atol=1e-4, rtol=0)
    torch.testing.assert_close(warp(x, _geometry(1, vflip=True))[0, 0], x[0, 0].flip(0), atol=1e-4, rtol=0)
    # counter-clockwise quarter turn, as np.rot90 / torchvision's rotate(90)
    expected_rot = torch.tensor([[3.0, 7, 11, 15], [2, 6, 10, 14], [1, 5, 9, 13], [0, 4, 8, 12]])
    torch.testing.assert_close(warp(x, _geometry(1, degrees=90.0))[0, 0], expected_rot, atol=1e-4, rtol=0)
    rect = torch.arange(8.0).reshape(1, 1, 2, 4)  # a non-square image turned half way round
    torch.testing.assert_close(warp(rect, _geometry(1, degrees=180.0, h=2, w=4)), rect.flip(-1).flip(-2), atol=1e-4, rtol=0)


def test_crop_of_a_ramp_by_hand() -> None:
    # pixel (i, j) of a 16 x 16 ramp holds j: bilinear sampling of a linear function is exact, so a
    # crop of width 8 starting at pixel 4 (offset 4 / 8 = 0.5 of the free room) reads columns
    # 4 - 0.25 + 0.5 * k for output column k, i.e. the ramp 3.75, 4.25, ..., 11.25
    ramp = torch.arange(16.0).repeat(16, 1)[None, None]
    out = warp(ramp, _geometry(1, fw=0.5, fh=0.5, ox=0.5, oy=0.5, h=16, w=16))[0, 0]
    expected = 3.75 + 0.5 * torch.arange(16.0)
    torch.testing.assert_close(out[8, 1:-1], expected[1:-1], atol=1e-4, rtol=0)
    # the same crop flipped reads the columns right to left; rows of a column-ramp do not change
    flipped = warp(ramp, _geometry(1, fw=0.5, fh=0.5, ox=0.5, oy=0.5, hflip=True, h=16, w=16))[0, 0]
    torch.testing.assert_close(flipped[8, 1:-1], expected.flip(0)[1:-1], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[3], out[12], atol=1e-4, rtol=0)
    # a crop flush with the left edge reads the edge pixel there, as a resize does (no dark border)
    left = warp(ramp + 1, _geometry(1, fw=0.5, fh=0.5, ox=0.0, oy=0.0, h=16, w=16))[0, 0]
    assert float(left[:, 0].min()) >= 1.0


def test_intensity_steps_match_monai_and_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 12, 12, generator=g)
    f = torch.tensor([0.8, 1.0, 1.2])
    torch.testing.assert_close(scale_brightness(x, f), x * f[:, None, None, None])
    contrast = scale_contrast(x, f)
    for i in range(3):
        ref = ScaleIntensityFixedMean(factor=float(f[i]) - 1, fixed_mean=True)(x[i])
        torch.testing.assert_close(contrast[i], torch.as_tensor(ref), atol=1e-6, rtol=1e-5)
    gamma = torch.tensor([0.7, 1.0, 1.5])
    adjusted = adjust_gamma(x, gamma)
    for i in range(3):
        ref = AdjustContrast(gamma=float(gamma[i]))(x[i])
        torch.testing.assert_close(adjusted[i], torch.as_tensor(ref), atol=1e-5, rtol=1e-5)
    assert torch.equal(adjusted[1], x[1])  # gamma 1: untouched
    sigma = torch.tensor([0.3, 0.6, 1.0])
    blurred = gaussian_blur(x, sigma, 7)
    for i in range(3):
        ref = TF.gaussian_blur(x[i], kernel_size=[7, 7], sigma=[float(sigma[i])] * 2)
        torch.testing.assert_close(blurred[i], ref, atol=1e-5, rtol=1e-5)


def test_image_views_have_per_sample_parameters_shape_dtype_and_range() -> None:
    augment = make_image_augment({})
    torch.manual_seed(0)
    x = torch.rand(1, 1, 28, 28).expand(64, 1, 28, 28).contiguous()  # one image, 64 times
    views = augment.batch(x)
    assert views.shape == x.shape and views.dtype == torch.float32 and views.device == x.device
    assert 0.0 <= float(views.min()) and float(views.max()) <= 1.0
    flat = views.reshape(64, -1)
    assert torch.cdist(flat, flat).fill_diagonal_(1.0).min() > 1e-3  # all 64 views differ from each other
    assert augment.batch(x.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="float batch"):
        augment.batch(torch.zeros(2, 28, 28))


def test_image_probabilities_are_per_sample() -> None:
    x = torch.rand(1, 1, 8, 8).expand(4000, 1, 8, 8)
    flips = make_image_augment({**NONE, "hflip_prob": 0.3}).batch(x)
    flipped = (flips - x.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-6
    unchanged = (flips - x).abs().amax(dim=(1, 2, 3)) < 1e-6
    assert bool((flipped | unchanged).all()) and 0.27 < float(flipped.float().mean()) < 0.33
    assert torch.equal(make_image_augment(NONE).batch(x), x)  # every step off: the images themselves


def test_views_are_reproducible_under_a_seed_and_a_generator() -> None:
    augment = make_image_augment({"blur_prob": 0.5, "gamma_prob": 0.5})
    x = torch.rand(16, 1, 28, 28)
    torch.manual_seed(3)
    a = augment.batch(x)
    torch.manual_seed(3)
    assert torch.equal(a, augment.batch(x))
    assert not torch.equal(a, augment.batch(x))
    b = augment.batch(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(b, augment.batch(x, generator=torch.Generator().manual_seed(1)))
    series = make_series_augment({})
    s = torch.randn(8, 2, 60)
    torch.manual_seed(4)
    first = series.batch(s)
    torch.manual_seed(4)
    assert torch.equal(first, series.batch(s))


def test_series_crop_resize_equals_interpolate_per_row() -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 3, 50)
    starts, lengths = crop_bounds(32, 50, 0.6)
    assert int(lengths.min()) >= 30 and int(lengths.max()) <= 50 and bool(((starts + lengths) <= 50).all())
    assert len(set(lengths.tolist())) > 5  # lengths differ within the batch
    linear, nearest = crop_resize_batch(x, starts, lengths, "linear"), crop_resize_batch(x, starts, lengths, "nearest")
    for i in range(32):
        bounds = (int(starts[i]), int(starts[i] + lengths[i]))
        torch.testing.assert_close(linear[i], crop_resize(x[i], bounds, "linear"), atol=1e-5, rtol=1e-5)
        assert torch.equal(nearest[i], crop_resize(x[i], bounds, "nearest"))
    # by hand: the crop [2, 5) of 0..5 stretched back to 6 steps reads 2, 2.4, 2.8, 3.2, 3.6, 4
    ramp = torch.arange(6.0)[None, None]
    out = crop_resize_batch(ramp, torch.tensor([2]), torch.tensor([3]), "linear")
    torch.testing.assert_close(out[0, 0], torch.tensor([2.0, 2.4, 2.8, 3.2, 3.6, 4.0]))


def test_series_views_per_sample_and_masks_stay_binary() -> None:
    torch.manual_seed(1)
    augment = make_series_augment({"mask_fraction": 0.3, "crop_min": 0.5}, mask_half=True)
    mask = (torch.rand(1, 4, 48) > 0.5).float()
    x = torch.cat([torch.randn(1, 4, 48) * mask, mask], dim=1).expand(16, 8, 48).contiguous()
    views = augment.batch(x)
    assert views.shape == (16, 8, 48) and views.dtype == torch.float32
    assert set(views[:, 4:].unique().tolist()) <= {0.0, 1.0}
    assert (views[:, :4][views[:, 4:] == 0] == 0).all()
    flat = views.reshape(16, -1)
    assert torch.cdist(flat, flat).fill_diagonal_(1.0).min() > 1e-3
    masked_steps = (views.abs().sum(dim=1) == 0).float().mean(dim=1)  # share of steps zeroed, per series
    assert 0.15 < float(masked_steps.mean()) < 0.6 and len(set(masked_steps.tolist())) > 3


def test_feature_corruption_batch_draws_per_entry() -> None:
    ref = torch.arange(40.0).reshape(10, 4) + 100
    out = FeatureCorruption(0.5, reference=ref, columns=3).batch(torch.zeros(500, 4))
    replaced = out != 0
    assert not replaced[:, 3].any() and 0.4 < float(replaced[:, :3].float().mean()) < 0.6
    for j in range(3):  # a replacement comes from the same column of the reference
        assert set(out[replaced[:, j], j].tolist()) <= set(ref[:, j].tolist())
    assert torch.equal(batched(FeatureCorruption(0.0)).__call__(torch.ones(3, 4)), torch.ones(3, 4))


def test_batched_falls_back_to_one_call_per_case() -> None:
    calls: list[tuple[int, ...]] = []

    def per_case(v: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(v.shape))
        return v + 1

    out = batched(per_case)(torch.zeros(3, 2, 5))
    assert torch.equal(out, torch.ones(3, 2, 5)) and calls == [(2, 5)] * 3


class _Cases:
    preprocessing = {"kind": "test"}
    channels = 2

    def __init__(self, n: int) -> None:
        self.x = torch.randn(n, 2, 7)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i].clone()


def test_hold_in_memory_keeps_values_and_respects_the_budget() -> None:
    cases = _Cases(2500)
    held = hold_in_memory(cases)
    assert isinstance(held, InMemoryCases) and len(held) == 2500
    assert torch.equal(held.tensor, cases.x) and held.preprocessing == {"kind": "test"} and held.channels == 2
    assert torch.equal(torch.stack(held.__getitems__([5, 0, 2499])), cases.x[[5, 0, 2499]])
    assert hold_in_memory(cases, budget=2500 * 14 * 4 - 1) is cases  # one byte short: read as before


def test_module_turns_raw_pairs_into_independent_views() -> None:
    torch.manual_seed(0)
    cases = hold_in_memory(_Cases(8))
    pairs = PairDataset(cases, list("aabbccdd"), None, pairing="augment")
    item = pairs[3]
    assert torch.equal(item["view1"], cases[3]) and torch.equal(item["view2"], cases[3])  # raw cases, no views yet
    image = torch.rand(1, 1, 28, 28).expand(8, 1, 28, 28)
    batch = {"view1": image, "view2": image, "patient": torch.arange(8), "index": torch.arange(8)}
    method = create_method("simclr", create_encoder("small_cnn", in_channels=1, width=4))
    module = PretrainModule(method, augment=batched(make_image_augment({})))
    threads = torch.get_num_threads()
    out = module.on_after_batch_transfer(batch, 0)
    assert torch.get_num_threads() == threads  # the views ran on one CPU thread; the setting is restored
    assert out["view1"].shape == out["view2"].shape == (8, 1, 28, 28)
    assert torch.equal(out["patient"], batch["patient"])
    assert not torch.equal(out["view1"], out["view2"])
    assert (out["view1"] - out["view2"]).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every pair differs
    assert np.isfinite(method.training_loss(out).item())
