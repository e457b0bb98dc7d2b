"""The imaging Dataset: item i = one grey image ``(1, S, S)`` float32 in [0, 1] for manifest row i.

Pipeline per case (``source_format`` of the row):
  decode ("dicom": ``read_dicom_pixels`` with the modality LUT, i.e. Hounsfield units for CT, and
  the file's VOI LUT / window only for rows ingested with ``--voi`` (manifest column ``voi``);
  "image": PNG/JPEG luminance; "npz": one image of a MedMNIST array, loaded once per worker)
  -> intensity scaling to [0, 1]
  -> zero-pad to a square (MONAI ``SpatialPad``, centred, so the aspect ratio is kept)
  -> resize to ``S x S`` (torchvision, bilinear with antialiasing) -> clamp to [0, 1].

Intensity scaling (``preprocessing["intensity"]``):
  - ``"robust"`` (default): per image, values at the ``percentiles`` (default 0.5 and 99.5) map to
    0 and 1 and everything outside is clipped. A few hot or dead pixels (burned-in text, collimator
    edges) cannot squash the contrast of the rest, and scanners with different bit depths land on
    the same scale. If both percentiles are equal (an almost uniform image) the plain minimum and
    maximum are used instead; a constant image becomes all zeros.
  - ``"window"``: a fixed window ``[center, width]`` in the source's units (Hounsfield units for
    CT), e.g. ``[40, 400]`` for soft tissue: ``center - width/2 -> 0``, ``center + width/2 -> 1``.
    Set by giving ``preprocessing={"window": [40, 400]}``.

Persistent cache: each decoded, scaled and resized image is saved as
``DATA_DIR/cache/imaging/<preprocessing hash>/<xx>/<case hash>.f32`` (raw float32, S*S values: no
header to parse, so a cached read is one small file read). The case hash covers the case id and its
source (path, frame, array); file names never contain ids in clear. A ``preprocessing.json`` in the
folder says what its entries hold. Entries are written to a temporary file and renamed, so a crash
never leaves a half-written entry (and an entry of the wrong length is recomputed), and
DataLoader workers (``num_workers > 0``) can fill the cache concurrently. A second epoch, or another
run with the same preprocessing, reads the cache instead of decoding.

Batched fetch (``__getitems__``, what a DataLoader calls for a whole batch): npz rows of one array
are decoded together, vectorised (one fancy-index, one percentile call, one scaling), which is
cheaper than one cache-file read per case, so they skip the cache there; values are identical to
the one-by-one path. The npz array itself is decompressed once and kept as
``DATA_DIR/cache/imaging/npz/<hash>.npy``, memory-mapped by later runs and workers. DICOM and PNG/JPEG rows go through the cache as above. Entries are keyed by where a
case comes from, not by the file's content: if files are replaced in place, delete
``DATA_DIR/cache/imaging`` (or ingest into a new DATA_DIR).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medssl.config import StrictConfig
from medssl.errors import ConfigError, DataError, ReaderError

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the pipeline changes so old cache entries are not reused
CACHE_DTYPE = np.dtype("<f4")  # entries are raw little-endian float32, S*S values, no header
CACHE_SUFFIX = ".f32"
DEFAULT_SIZE = 224  # DICOM and PNG/JPEG; npz sources default to their native size (28 for MedMNIST)
SOURCE_FORMATS = ("dicom", "image", "npz")


class ImagingPreprocessing(StrictConfig):
    """The preprocessing an imaging dataset applies; saved in checkpoints as a plain dict."""

    size: int
    intensity: str = "robust"
    percentiles: tuple[float, float] = (0.5, 99.5)
    window: tuple[float, float] | None = None


def resolve_preprocessing(manifest: pd.DataFrame, given: dict[str, Any] | None) -> dict[str, Any]:
    """The complete preprocessing dict: ``given`` (possibly partial) with defaults filled in.

    Defaults: ``size`` = the largest native side when every row is an npz image (28 for
    MedMNIST), else 224; ``intensity`` = ``"window"`` when a window is given, else ``"robust"``.
    Raises ``ConfigError`` for unknown keys or bad values.
    """
    data = dict(given or {})
    if "size" not in data:
        data["size"] = _native_npz_size(manifest) or DEFAULT_SIZE
    if data.get("window") is not None and "intensity" not in data:
        data["intensity"] = "window"
    try:
        prep = ImagingPreprocessing.model_validate(data)
    except Exception as exc:  # pydantic.ValidationError; message lists the bad keys
        raise ConfigError(f"invalid imaging preprocessing {data}: {exc}") from None
    if prep.size < 8 or prep.size > 4096:
        raise ConfigError(f"imaging preprocessing size={prep.size} must be between 8 and 4096 pixels")
    if prep.intensity not in ("robust", "window"):
        raise ConfigError(f"imaging preprocessing intensity={prep.intensity!r} must be 'robust' or 'window'")
    if prep.intensity == "window" and (prep.window is None or prep.window[1] <= 0):
        raise ConfigError("imaging preprocessing intensity='window' needs window=[center, width] with width > 0")
    lo, hi = prep.percentiles
    if not 0 <= lo < hi <= 100:
        raise ConfigError(f"imaging preprocessing percentiles={list(prep.percentiles)} must satisfy 0 <= low < high <= 100")
    out = prep.model_dump(mode="json")
    out["percentiles"] = [float(lo), float(hi)]
    if out["window"] is not None:
        out["window"] = [float(v) for v in out["window"]]
    return out


def _native_npz_size(manifest: pd.DataFrame) -> int | None:
    if len(manifest) == 0 or "source_format" not in manifest.columns:
        return None
    if not (manifest["source_format"] == "npz").all() or not {"rows", "columns"} <= set(manifest.columns):
        return None
    return int(max(manifest["rows"].max(), manifest["columns"].max()))


def preprocessing_key(preprocessing: dict[str, Any]) -> str:
    """A short hash naming the cache folder of one preprocessing."""
    text = json.dumps({"v": CACHE_VERSION, **preprocessing}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_small_int(pixels: np.ndarray) -> bool:
    """Integer pixels of at most 16 bits: exact in float32, and numpy sorts them by radix."""
    return pixels.dtype.kind in "ui" and pixels.dtype.itemsize <= 2


def row_percentiles(rows: np.ndarray, percentiles: Any) -> np.ndarray:
    """``np.percentile(rows.astype(float32), percentiles, axis=1)``: float64 ``(len(percentiles), B)``
    for ``rows`` ``(B, N)`` (finite values).

    Integer rows of at most 16 bits (8-bit X-rays, 12/16-bit DICOM) take a faster road with the
    same values: a radix sort of each row (``np.sort(kind="stable")``, ~10x cheaper than the
    partition inside ``np.percentile``), then numpy's own "linear" rule between the two order
    statistics, with numpy's arithmetic (difference in float32, weight in float64). Tests hold the
    two roads equal.
    """
    if not _is_small_int(rows):
        return np.percentile(np.asarray(rows, dtype=np.float32), percentiles, axis=1)
    n = rows.shape[1]
    ordered = np.sort(rows, axis=1, kind="stable")
    out = []
    for q in np.true_divide(np.asarray(percentiles, dtype=np.float64), 100):
        virtual = (n - 1) * q
        below = np.floor(virtual)
        gamma = virtual - below
        if virtual >= n - 1:
            lo = hi = n - 1
        elif virtual < 0:
            lo = hi = 0
        else:
            lo, hi = int(below), int(below) + 1
        a, b = ordered[:, lo].astype(np.float32), ordered[:, hi].astype(np.float32)
        diff = b - a
        out.append(np.subtract(b, diff * (1 - gamma)) if gamma >= 0.5 else np.add(a, diff * gamma))
    return np.stack(out)


def scale_intensity(pixels: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """Map ``pixels`` ``(H, W)`` to float32 in [0, 1] (robust per-image min-max or fixed window)."""
    raw = np.asarray(pixels)
    pixels = np.asarray(pixels, dtype=np.float32)
    if preprocessing["intensity"] == "window":
        center, width = preprocessing["window"]
        lo, hi = center - width / 2, center + width / 2
    else:
        finite = pixels[np.isfinite(pixels)]
        if finite.size == 0:
            return np.zeros_like(pixels)
        rows = raw.reshape(1, -1) if _is_small_int(raw) else finite.reshape(1, -1)
        lo, hi = (float(v[0]) for v in row_percentiles(rows, preprocessing["percentiles"]))
        if not hi > lo:  # e.g. a mostly black image with a few bright pixels: plain min-max
            lo, hi = float(finite.min()), float(finite.max())
    if not hi > lo:
        return np.zeros_like(pixels)
    out = (np.nan_to_num(pixels, nan=lo) - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def to_square(image: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W)`` in [0, 1] -> ``(1, size, size)``: centred zero padding to a square, then resize."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    side = max(tensor.shape[-2:])
    # MONAI and torchvision are imported only when needed: together they cost seconds at start-up,
    # and native-size square images (MedMNIST) need neither
    if tensor.shape[-2] != tensor.shape[-1]:
        from monai.transforms import SpatialPad

        tensor = SpatialPad(spatial_size=(side, side), method="symmetric")(tensor).as_tensor()
    if side != size:
        from torchvision.transforms.v2 import functional as TF

        tensor = TF.resize(tensor, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return tensor.clamp_(0.0, 1.0).contiguous()


def scale_intensity_batch(pixels: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray | None:
    """``scale_intensity`` of each image of ``pixels`` ``(B, H, W)`` at once -> float32 ``(B, H, W)``.

    Gives exactly the values of ``scale_intensity`` image by image (same float32 arithmetic).
    Returns ``None`` when any value is not finite (the per-image path handles NaN/inf).
    """
    raw = np.asarray(pixels)
    pixels = np.asarray(pixels, dtype=np.float32)
    if not _is_small_int(raw) and not np.isfinite(pixels).all():
        return None
    flat = pixels.reshape(len(pixels), -1)
    if preprocessing["intensity"] == "window":
        center, width = preprocessing["window"]
        lo = np.full(len(pixels), center - width / 2, dtype=np.float64)
        hi = np.full(len(pixels), center + width / 2, dtype=np.float64)
    else:
        rows = raw.reshape(len(raw), -1) if _is_small_int(raw) else flat
        lo, hi = (v.astype(np.float64) for v in row_percentiles(rows, preprocessing["percentiles"]))
        flat_lo = ~(hi > lo)  # mostly uniform images: plain min-max, as scale_intensity does
        if flat_lo.any():
            lo[flat_lo] = flat[flat_lo].min(axis=1)
            hi[flat_lo] = flat[flat_lo].max(axis=1)
    ok = hi > lo
    num = flat - lo.astype(np.float32)[:, None]
    den = np.where(ok, hi - lo, 1.0).astype(np.float32)[:, None]
    out = np.clip(num / den, 0.0, 1.0).astype(np.float32)
    out[~ok] = 0.0
    return out.reshape(pixels.shape)


def _grey(image: np.ndarray, grey_ndim: int = 2) -> np.ndarray:
    """npz pixels ``(..., H, W)``, ``(..., H, W, 1)`` or ``(..., H, W, 3)`` as ``(..., H, W)``
    luminance (ITU-R 601); ``grey_ndim`` is the number of dimensions of a grey input (2 for one
    image, 3 for a batch)."""
    if image.ndim == grey_ndim + 1:
        if image.shape[2] == 1:
            return image[..., 0]
        return image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return image


class ImagingDataset(Dataset):
    """Grey images ``(1, S, S)`` float32 in [0, 1], one per manifest row, with a persistent cache.

    ``preprocessing`` is the resolved dict (see ``resolve_preprocessing``); ``case_ids`` and
    ``patient_ids`` follow the manifest order. ``cache=False`` decodes every time.
    """

    def __init__(self, data_dir: str | Path, manifest: pd.DataFrame, preprocessing: dict[str, Any] | None = None, cache: bool = True) -> None:
        missing = [c for c in ("case_id", "source_format", "path") if c not in manifest.columns]
        if missing:
            raise DataError(f"imaging manifest lacks column(s) {missing}; re-run `medssl ingest images` or `medssl ingest dicom`")
        unknown = sorted(set(manifest["source_format"].astype(str)) - set(SOURCE_FORMATS))
        if unknown:
            raise DataError(f"imaging manifest has unknown source_format value(s) {unknown}; expected {list(SOURCE_FORMATS)}")
        self.preprocessing = resolve_preprocessing(manifest, preprocessing)
        self.size = int(self.preprocessing["size"])
        self.case_ids: list[str] = manifest["case_id"].astype(str).tolist()
        self.patient_ids: list[str] = manifest["patient_id"].astype(str).tolist() if "patient_id" in manifest else list(self.case_ids)
        self._formats: list[str] = manifest["source_format"].astype(str).tolist()
        self._paths: list[str] = manifest["path"].astype(str).tolist()
        self._frames: list[int] = _int_column(manifest, "frame")
        self._keys: list[str] = manifest["array_key"].astype(str).tolist() if "array_key" in manifest else [""] * len(manifest)
        self._indices: list[int] = _int_column(manifest, "array_index")
        # DICOM ingested with --voi: read with the file's own VOI LUT / window (manifest column "voi")
        self._voi: list[bool] = manifest["voi"].fillna(False).astype(bool).tolist() if "voi" in manifest else [False] * len(manifest)
        self.cache_dir: Path | None = Path(data_dir) / "cache" / "imaging" / preprocessing_key(self.preprocessing) if cache else None
        # decompressed npz arrays, memory-mapped (see medssl.data.imaging.npz.load_npz_array)
        self._npz_cache: Path | None = Path(data_dir) / "cache" / "imaging" / "npz" if cache else None
        self._arrays: dict[tuple[str, str], np.ndarray] = {}  # npz arrays, loaded once per process
        if self.cache_dir is not None:
            self._write_cache_info(self.cache_dir)

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getstate__(self) -> dict[str, Any]:  # do not ship loaded npz arrays to spawned workers
        return {**self.__dict__, "_arrays": {}}

    def __getitem__(self, index: int) -> torch.Tensor:
        """The image of manifest row ``index``: float32 ``(1, S, S)`` in [0, 1]."""
        entry = self._cache_path(index)
        if entry is not None:
            try:
                cached = np.fromfile(entry, dtype=CACHE_DTYPE)
                if cached.size == self.size * self.size:  # a short file is never trusted
                    return torch.from_numpy(cached.astype(np.float32, copy=False).reshape(1, self.size, self.size))
            except (FileNotFoundError, OSError, ValueError):
                pass  # not cached yet (or unreadable): decode and (re)write it
        tensor = to_square(scale_intensity(self._decode(index), self.preprocessing), self.size)
        if entry is not None:
            self._store(entry, tensor.numpy())
        return tensor

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """Items of ``indices`` (a DataLoader's batched fetch): a list of ``(1, S, S)`` tensors.

        npz rows from the same array are decoded and scaled in one vectorised step (no cache:
        that is cheaper than reading one cache file per case); other rows go one by one.
        """
        out: list[torch.Tensor | None] = [None] * len(indices)
        groups: dict[tuple[str, str], list[int]] = {}
        for pos, index in enumerate(indices):
            if self._formats[index] == "npz":
                groups.setdefault((self._paths[index], self._keys[index]), []).append(pos)
            else:
                out[pos] = self[index]
        for key, positions in groups.items():
            rows = [indices[p] for p in positions]
            batch = self._npz_batch(key, rows)
            for pos, index, tensor in zip(positions, rows, batch if batch is not None else [None] * len(rows)):
                out[pos] = tensor if tensor is not None else self[index]
        return out  # type: ignore[return-value]

    def _npz_batch(self, key: tuple[str, str], rows: list[int]) -> list[torch.Tensor] | None:
        """``(1, S, S)`` tensors of the npz ``rows`` of one array, or ``None`` to go one by one."""
        try:
            array = self._npz_array(rows[0])
        except ReaderError:
            return None  # one by one, so the error names the case
        idx = np.asarray([self._indices[r] for r in rows], dtype=np.int64)
        if len(idx) == 0 or idx.min() < -len(array) or idx.max() >= len(array):
            return None
        images = _grey(np.asarray(array[idx]), grey_ndim=3)
        if images.ndim != 3:
            return None
        scaled = scale_intensity_batch(images, self.preprocessing)
        if scaled is None:
            return None
        if scaled.shape[1] == scaled.shape[2] == self.size:
            batch = torch.from_numpy(scaled)[:, None]
            return list(batch)
        return [to_square(image, self.size) for image in scaled]

    def _npz_array(self, index: int) -> np.ndarray:
        """The whole npz array row ``index`` lives in, loaded once per process (``ReaderError``)."""
        key = (self._paths[index], self._keys[index])
        if key not in self._arrays:
            from medssl.data.imaging.npz import load_npz_array

            self._arrays[key] = load_npz_array(*key, cache_dir=self._npz_cache)
        return self._arrays[key]

    def _decode(self, index: int) -> np.ndarray:
        """Raw grey pixels ``(H, W)`` of row ``index``; ``ReaderError`` names the case on failure."""
        fmt, path = self._formats[index], self._paths[index]
        try:
            if fmt == "npz":
                return _grey(self._npz_array(index)[self._indices[index]])
            if fmt == "image":
                from medssl.data.imaging.images import read_image_pixels

                return read_image_pixels(path)[0]
            from medssl.data.imaging.dicom import read_dicom_pixels  # written alongside; imported lazily

            pixels, _ = read_dicom_pixels(path, frame=self._frames[index], voi=self._voi[index])
            return pixels
        except ReaderError as exc:
            raise ReaderError(exc.path, f"case {self.case_ids[index]!r}: {exc.reason}") from None
        except IndexError:
            raise ReaderError(path, f"case {self.case_ids[index]!r}: index {self._indices[index]} is outside {self._keys[index]!r}; re-run the ingest") from None

    def _cache_path(self, index: int) -> str | None:
        if self.cache_dir is None:
            return None
        source = "\0".join(
            str(v)
            for v in (self.case_ids[index], self._formats[index], self._paths[index], self._frames[index], self._keys[index], self._indices[index], self._voi[index])
        )
        digest = hashlib.sha256(source.encode()).hexdigest()[:32]
        return os.path.join(self.cache_dir, digest[:2], digest + CACHE_SUFFIX)

    def _store(self, entry: str, array: np.ndarray) -> None:
        """Write ``array`` to ``entry`` atomically; a read-only DATA_DIR turns the cache off."""
        try:
            folder = os.path.dirname(entry)
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=CACHE_SUFFIX)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(np.ascontiguousarray(array, dtype=CACHE_DTYPE).tobytes())
                os.replace(tmp, entry)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            log.warning("image cache disabled: cannot write under %s (%s)", self.cache_dir, exc)
            self.cache_dir = None

    def _write_cache_info(self, cache_dir: Path) -> None:
        """``preprocessing.json`` beside the entries, so a person can tell cache folders apart."""
        info = cache_dir / "preprocessing.json"
        if info.is_file():
            return
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w") as fh:
                json.dump({"cache_version": CACHE_VERSION, **self.preprocessing}, fh, indent=2)
            os.replace(tmp, info)
        except OSError as exc:
            log.warning("image cache disabled: cannot write under %s (%s)", cache_dir, exc)
            self.cache_dir = None


def _int_column(manifest: pd.DataFrame, name: str) -> list[int]:
    if name not in manifest.columns:
        return [0] * len(manifest)
    return pd.to_numeric(manifest[name], errors="coerce").fillna(0).astype(np.int64).tolist()


def make_imaging_dataset(data_dir: Path, manifest: pd.DataFrame, preprocessing: dict[str, Any] | None) -> ImagingDataset:
    """The ``Domain.make_dataset`` of "imaging" (nothing is fitted: scaling is per image)."""
    return ImagingDataset(data_dir, manifest, preprocessing)
