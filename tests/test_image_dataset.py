"""The imaging Dataset (real MedMNIST, PNG and DICOM pixels), its persistent cache, and augmentations."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from medssl.data import ErrorLog, get_domain
from medssl.data.imaging.dataset import ImagingDataset
from medssl.data.imaging.preprocessing import resolve_preprocessing
from medssl.data.imaging.domain import default_encoder_for
from medssl.data.imaging.npz import scan_npz
from medssl.errors import ConfigError, ReaderError
from medssl.transforms.image import make_image_augment

NPZ = "imaging/pneumoniamnist_trainval.npz"


def _robust(img: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Hand-written reference of the default intensity scaling."""
    img = img.astype(np.float64)
    lo, hi = np.percentile(img, [lo_pct, hi_pct])
    return np.clip((img - lo) / (hi - lo), 0, 1)


@pytest.fixture()
def npz_copy(shared_data: Path, tmp_path: Path) -> Path:
    """A private copy of the real MedMNIST file (so a test may delete it)."""
    dst = tmp_path / "src" / "pneumonia.npz"
    dst.parent.mkdir()
    shutil.copy(shared_data / NPZ, dst)
    return dst


def _npz_manifest(path: Path, n: int) -> pd.DataFrame:
    df = scan_npz(path, ErrorLog())
    return pd.concat([df[df["split"] == "train"].head(n // 2), df[df["split"] == "val"].head(n - n // 2)], ignore_index=True)


def _epoch(ds: ImagingDataset) -> torch.Tensor:
    return torch.stack([ds[i] for i in range(len(ds))])


def test_npz_items_are_scaled_real_images_and_second_epoch_reads_only_the_cache(npz_copy: Path, tmp_path: Path) -> None:
    manifest = _npz_manifest(npz_copy, 200)
    data_dir = tmp_path / "data"
    ds = get_domain("imaging").make_dataset(data_dir, manifest, None)
    assert ds.preprocessing == {"size": 28, "intensity": "robust", "percentiles": [0.5, 99.5], "window": None}
    first = _epoch(ds)
    assert first.shape == (200, 1, 28, 28) and first.dtype == torch.float32
    assert first.min() == 0.0 and first.max() == 1.0
    with np.load(npz_copy) as arrays:
        raw_train, raw_val = arrays["train_images"][:100], arrays["val_images"][:100]
    np.testing.assert_allclose(first[0, 0].numpy(), _robust(raw_train[0]), atol=1e-6)
    np.testing.assert_allclose(first[150, 0].numpy(), _robust(raw_val[50]), atol=1e-6)
    entries = sorted((ds.cache_dir).rglob("*.f32"))
    assert len(entries) == 200
    assert all(len(e.stem) == 32 and all(c in "0123456789abcdef" for c in e.stem) for e in entries)  # no ids in names
    npz_copy.unlink()  # the source is gone: a second epoch can only come from the cache
    again = get_domain("imaging").make_dataset(data_dir, manifest, ds.preprocessing)
    assert torch.equal(_epoch(again), first)
    loader = DataLoader(again, batch_size=64, num_workers=2)
    assert torch.equal(torch.cat(list(loader)), first)


def test_dataloader_workers_fill_the_cache_and_load_npz_once_per_worker(npz_copy: Path, tmp_path: Path) -> None:
    manifest = _npz_manifest(npz_copy, 120)
    ds = ImagingDataset(tmp_path / "data", manifest, None)
    # batch_size=None: the workers fetch case by case (the cached path)
    from_workers = torch.stack(list(DataLoader(ds, batch_size=None, num_workers=2)))
    assert ds._arrays == {}  # the parent never loaded the arrays: each worker did, once
    assert len(list(ds.cache_dir.rglob("*.f32"))) == 120
    uncached = ImagingDataset(tmp_path / "other", manifest, None, cache=False)
    assert torch.equal(from_workers, _epoch(uncached))
    assert len(uncached._arrays) == 2  # train_images and val_images, each read once


def test_batched_npz_fetch_equals_the_one_by_one_path_and_skips_the_cache(tmp_path: Path) -> None:
    """A DataLoader batch (``__getitems__``) decodes npz rows vectorised: same values as item by item,
    including the edge cases of the robust scaling (constant and nearly uniform images), RGB arrays,
    resizing, and a fixed window; the cache is neither read nor written on that path."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(12, 20, 20), dtype=np.uint8)
    grey[3] = 77  # constant: all zeros
    grey[5] = 10
    grey[5, 0, 0] = 250  # nearly uniform: percentiles equal -> min-max
    rgb = rng.integers(0, 256, size=(5, 20, 20, 3), dtype=np.uint8)
    src = tmp_path / "arrays.npz"
    np.savez(src, grey_images=grey, rgb_images=rgb)
    manifest = pd.DataFrame({
        "case_id": [f"g{i}" for i in range(12)] + [f"c{i}" for i in range(5)],
        "source_format": "npz", "path": str(src),
        "array_key": ["grey_images"] * 12 + ["rgb_images"] * 5,
        "array_index": list(range(12)) + list(range(5)), "rows": 20, "columns": 20,
    })
    order = [16, 3, 0, 5, 12, 7, 1, 11]  # mixed arrays, out of order
    for prep in (None, {"size": 32}, {"window": [120.0, 100.0]}):
        ds = ImagingDataset(tmp_path / "data", manifest, prep)
        batched = torch.stack(ds.__getitems__(order))
        assert not list(ds.cache_dir.rglob("*.f32"))  # the batched npz path does not touch the cache
        one_by_one = torch.stack([ImagingDataset(tmp_path / "plain", manifest, prep, cache=False)[i] for i in order])
        assert batched.shape == (8, 1, ds.size, ds.size)
        assert torch.equal(batched, one_by_one)
    assert torch.allclose(batched[1], torch.full((1, 20, 20), 0.07))  # constant 77 in window [70, 170]
    robust = ImagingDataset(tmp_path / "data", manifest, None).__getitems__([3, 5])
    assert robust[0].max() == 0.0 and robust[1].max() == 1.0 and robust[1][0, 0, 1] == 0.0



def test_npz_array_is_decompressed_once_then_memory_mapped_and_follows_a_replaced_archive(npz_copy: Path, tmp_path: Path) -> None:
    manifest = _npz_manifest(npz_copy, 6)
    first = ImagingDataset(tmp_path / "data", manifest, None)
    want = torch.stack(first.__getitems__(list(range(6))))
    entries = list((tmp_path / "data" / "cache" / "imaging" / "npz").glob("*.npy"))
    assert len(entries) == 2  # train_images and val_images, decompressed
    with np.load(npz_copy) as archive:
        assert any(np.array_equal(np.load(e), archive["train_images"]) for e in entries)
    again = ImagingDataset(tmp_path / "data", manifest, None)  # a later run or worker: memory-mapped
    assert isinstance(again._npz_array(0), np.memmap)
    assert torch.equal(torch.stack(again.__getitems__(list(range(6)))), want)
    assert torch.equal(again[0], want[0])
    # a damaged entry is rewritten, not trusted
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:100])
    repaired = ImagingDataset(tmp_path / "data", manifest, None)
    assert torch.equal(torch.stack(repaired.__getitems__(list(range(6)))), want)
    assert all(e.stat().st_size > 100 for e in entries)
    # the archive replaced in place (new content): a new entry, the new pixels
    with np.load(npz_copy) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["train_images"] = 255 - arrays["train_images"]
    np.savez(npz_copy, **arrays)
    replaced = ImagingDataset(tmp_path / "data", manifest, None)
    inverted = replaced.__getitems__([0])[0]
    assert not torch.equal(inverted, want[0])
    assert torch.equal(inverted, ImagingDataset(tmp_path / "plain", manifest, None, cache=False)[0])


def test_a_damaged_cache_entry_is_recomputed(npz_copy: Path, tmp_path: Path) -> None:
    manifest = _npz_manifest(npz_copy, 4)
    ds = ImagingDataset(tmp_path, manifest, None)
    first = _epoch(ds)
    entry = Path(ds._cache_path(1))
    entry.write_bytes(entry.read_bytes()[:50])  # as if a write had been cut off mid-way
    assert torch.equal(ImagingDataset(tmp_path, manifest, None)[1], first[1])
    assert entry.stat().st_size == 28 * 28 * 4  # rewritten whole
    # no temporary file left behind: only entries and the preprocessing note, none hidden
    files = [p for p in ds.cache_dir.rglob("*") if p.is_file()]
    assert all(p.suffix in (".f32", ".json") and not p.name.startswith(".") for p in files), files


def test_png_non_square_is_padded_then_resized(shared_data: Path, tmp_path: Path) -> None:
    from PIL import Image

    with np.load(shared_data / NPZ) as arrays:
        img = arrays["val_images"][0]
    wide = np.concatenate([img, img], axis=1)  # 28 x 56
    Image.fromarray(wide).save(tmp_path / "wide.png")
    manifest = pd.DataFrame(
        {"case_id": ["wide"], "patient_id": ["p"], "domain": "imaging", "source_format": "image",
         "path": [str(tmp_path / "wide.png")], "frame": [0], "rows": [28], "columns": [56]}
    )
    ds = ImagingDataset(tmp_path / "data", manifest, {"size": 56})
    assert ds.preprocessing["size"] == 56
    out = ds[0][0].numpy()
    assert out.shape == (56, 56)
    assert np.all(out[:14] == 0) and np.all(out[42:] == 0)  # centred zero padding above and below
    np.testing.assert_allclose(out[14:42], _robust(wide), atol=1e-6)
    small = ImagingDataset(tmp_path / "data", manifest, None)
    assert small.preprocessing["size"] == 224 and small[0].shape == (1, 224, 224)
    assert 0.0 <= float(small[0].min()) and float(small[0].max()) <= 1.0


def test_dicom_ct_window_in_hounsfield_units(tmp_path: Path) -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    ds_dcm = pydicom.dcmread(path)
    hu = ds_dcm.pixel_array.astype(np.float64) * float(ds_dcm.RescaleSlope) + float(ds_dcm.RescaleIntercept)
    manifest = pd.DataFrame(
        {"case_id": ["ct"], "patient_id": ["p"], "domain": "imaging", "source_format": "dicom",
         "path": [path], "frame": [0]}
    )
    ds = ImagingDataset(tmp_path, manifest, {"size": 128, "window": [40, 400]})
    assert ds.preprocessing["intensity"] == "window"
    out = ds[0][0].numpy()
    np.testing.assert_allclose(out, np.clip((hu - (40 - 200)) / 400, 0, 1), atol=1e-6)
    assert out[64, 64] == pytest.approx(min(max((hu[64, 64] + 160) / 400, 0), 1), abs=1e-6)


def test_decode_failure_names_the_case(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    manifest = pd.DataFrame(
        {"case_id": ["case-7"], "patient_id": ["p"], "domain": "imaging", "source_format": "image",
         "path": [str(tmp_path / "broken.png")], "frame": [0]}
    )
    with pytest.raises(ReaderError, match="case 'case-7'"):
        ImagingDataset(tmp_path, manifest, None)[0]


def test_preprocessing_rejects_unknown_keys_and_bad_windows() -> None:
    manifest = pd.DataFrame({"case_id": ["a"], "source_format": ["image"], "path": ["x"]})
    with pytest.raises(ConfigError, match="sizee"):
        resolve_preprocessing(manifest, {"sizee": 64})
    with pytest.raises(ConfigError, match="width > 0"):
        resolve_preprocessing(manifest, {"window": [40, 0]})


def test_domain_registration() -> None:
    domain = get_domain("imaging")
    assert domain.name == "imaging"
    assert domain.encoder_for({"size": 28}) == "small_cnn" and domain.encoder_for({"size": 224}) == "resnet18"
    assert domain.encoder_kwargs(None) == {"in_channels": 1}
    assert default_encoder_for({"size": 28}) == "small_cnn" and default_encoder_for({"size": 224}) == "resnet18"


@pytest.mark.parametrize("size", [28, 224])
def test_augment_keeps_shape_and_range_and_differs_between_calls(shared_data: Path, size: int) -> None:
    with np.load(shared_data / NPZ) as arrays:
        img = torch.from_numpy(_robust(arrays["train_images"][3]).astype(np.float32))[None]
    if size != 28:
        img = torch.nn.functional.interpolate(img[None], size=(size, size), mode="bilinear")[0].clamp(0, 1)
    augment = get_domain("imaging").make_augment({})
    views = [augment(img) for _ in range(8)]
    for v in views:
        assert v.shape == (1, size, size) and v.dtype == torch.float32
        assert 0.0 <= float(v.min()) and float(v.max()) <= 1.0
    assert all(not torch.equal(views[0], v) for v in views[1:])
    torch.manual_seed(5)
    a = augment(img)
    torch.manual_seed(5)
    assert torch.equal(a, augment(img))  # all randomness (MONAI's included) follows torch's generator


def test_augment_options_are_checked_and_applied() -> None:
    img = torch.rand(1, 28, 28)
    identity = make_image_augment(
        {"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "hflip_prob": 0, "rotate_prob": 0, "brightness_prob": 0,
         "contrast_prob": 0, "gamma_prob": 0, "blur_prob": 0, "noise_prob": 0}
    )
    assert torch.allclose(identity(img), img, atol=1e-6)
    flip = make_image_augment({"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "hflip_prob": 1.0, "rotate_prob": 0,
                               "brightness_prob": 0, "contrast_prob": 0, "gamma_prob": 0, "blur_prob": 0, "noise_prob": 0})
    assert torch.allclose(flip(img), img.flip(-1), atol=1e-6)
    with pytest.raises(ConfigError, match="hue"):
        make_image_augment({"hue": 0.1})
    with pytest.raises(ConfigError, match="probability"):
        make_image_augment({"noise_prob": 2})


def test_robust_scaling_falls_back_to_min_max_for_nearly_uniform_images() -> None:
    from medssl.data.imaging.intensity import scale_intensity

    prep = resolve_preprocessing(pd.DataFrame({"source_format": ["image"]}), None)
    img = np.zeros((28, 28), dtype=np.float32)
    img[3, 4] = 200.0  # one bright pixel: both percentiles are 0
    out = scale_intensity(img, prep)
    assert out[3, 4] == 1.0 and out.sum() == 1.0
    assert not scale_intensity(np.full((4, 4), 7.0, dtype=np.float32), prep).any()



@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_integer_percentile_road_equals_numpy_percentile(dtype: type) -> None:
    from medssl.data.imaging.intensity import row_percentiles, scale_intensity, scale_intensity_batch

    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    for trial in range(200):
        n, b = int(rng.integers(1, 900)), int(rng.integers(1, 12))
        high = int(info.max) if trial % 2 else 5  # wide ranges and many ties
        rows = rng.integers(max(int(info.min), -3000), high, size=(b, n), endpoint=True).astype(dtype)
        q = [float(rng.choice([0, 0.5, 2.5, 50, 99.5, 100, rng.uniform(0, 100)])) for _ in range(2)]
        got = row_percentiles(rows, q)
        want = np.percentile(rows.astype(np.float32), q, axis=1)
        assert got.dtype == want.dtype == np.float64
        np.testing.assert_array_equal(got, want)
    # images: the integer road gives the float road's pixels, one by one and batched
    prep = resolve_preprocessing(pd.DataFrame({"source_format": ["image"]}), None)
    images = rng.integers(0, min(int(info.max), 4000), size=(6, 28, 28), endpoint=True).astype(dtype)
    batch = scale_intensity_batch(images, prep)
    for image, scaled in zip(images, batch):
        np.testing.assert_array_equal(scale_intensity(image, prep), scale_intensity(image.astype(np.float32), prep))
        np.testing.assert_array_equal(scaled, scale_intensity(image.astype(np.float32), prep))
    assert 0.0 <= batch.min() and batch.max() == 1.0


def test_dicom_ingested_with_voi_is_read_with_its_window(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    from medssl.cli import main
    from medssl.data import read_manifest
    from medssl.data.imaging.dicom import read_dicom_pixels

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr.dcm")  # 64 x 64, WindowCenter 600 / Width 1600
    for flag, name in (([], "plain"), (["--voi"], "voi")):
        assert main(["ingest", "dicom", str(src), "--out", str(tmp_path / name), "--workers", "1", *flag]) == 0
    plain_rows, voi_rows = read_manifest(tmp_path / "plain"), read_manifest(tmp_path / "voi")
    plain = ImagingDataset(tmp_path / "plain", plain_rows, {"size": 64})[0][0].numpy()
    windowed = ImagingDataset(tmp_path / "voi", voi_rows, {"size": 64})[0][0].numpy()
    np.testing.assert_allclose(plain, _robust(read_dicom_pixels(src / "mr.dcm", frame=0)[0]), atol=1e-6)
    np.testing.assert_allclose(windowed, _robust(read_dicom_pixels(src / "mr.dcm", frame=0, voi=True)[0]), atol=1e-6)
    assert np.abs(plain - windowed).max() > 0.1
