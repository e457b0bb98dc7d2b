"""The imaging Dataset: item i = one grey image ``(1, S, S)`` float32 in [0, 1] for manifest row i.

Pipeline per case (``source_format`` of the row):
  decode ("dicom": ``read_dicom_pixels`` with the modality LUT, i.e. Hounsfield units for CT, and
  the file's VOI LUT / window only for rows ingested with ``--voi`` (manifest column ``voi``);
  "image": PNG/JPEG luminance; "npz": one image of a MedMNIST array, loaded once per worker)
  -> intensity scaling to [0, 1] (``medssl.data.imaging.intensity``)
  -> zero-pad to a square, resize to ``S x S``, clamp (``medssl.data.imaging.preprocessing``)
  -> persistent cache (``medssl.data.imaging.cache``): a second epoch, or another run with the
  same preprocessing, reads the cache instead of decoding.

Batched fetch (``__getitems__``, what a DataLoader calls for a whole batch): npz rows of one array
are decoded together, vectorised (one fancy-index, one percentile call, one scaling), which is
cheaper than one cache-file read per case, so they skip the cache there; values are identical to
the one-by-one path. The npz array itself is decompressed once and kept as
``DATA_DIR/cache/imaging/npz/<hash>.npy``, memory-mapped by later runs and workers. DICOM and
PNG/JPEG rows go through the cache.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medssl.data.imaging.cache import (
    entry_path,
    imaging_cache_root,
    preprocessing_key,
    read_entry,
    store_entry,
    write_cache_info,
)
from medssl.data.imaging.intensity import scale_intensity, scale_intensity_batch
from medssl.data.imaging.preprocessing import grey, resolve_preprocessing, to_square
from medssl.errors import DataError, ReaderError

log = logging.getLogger(__name__)

SOURCE_FORMATS = ("dicom", "image", "npz")


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
        _check_pointers(manifest, self._formats, data_dir)
        self._frames: list[int] = _int_column(manifest, "frame")
        self._keys: list[str] = manifest["array_key"].astype(str).tolist() if "array_key" in manifest else [""] * len(manifest)
        self._indices: list[int] = _int_column(manifest, "array_index")
        # DICOM ingested with --voi: read with the file's own VOI LUT / window (manifest column "voi")
        self._voi: list[bool] = manifest["voi"].fillna(False).astype(bool).tolist() if "voi" in manifest else [False] * len(manifest)
        self.cache_dir: Path | None = imaging_cache_root(data_dir) / preprocessing_key(self.preprocessing) if cache else None
        # decompressed npz arrays, memory-mapped (see medssl.data.imaging.npz.load_npz_array)
        self._npz_cache: Path | None = imaging_cache_root(data_dir) / "npz" if cache else None
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
            cached = read_entry(entry, self.size)
            if cached is not None:
                return cached
            # not cached yet (or unreadable, or cut short): decode and (re)write it
        tensor = to_square(scale_intensity(self.decode(index), self.preprocessing), self.size)
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
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= len(array):
            return None  # one by one: decode names the case whose index is outside the array
        images = grey(np.asarray(array[idx]), grey_ndim=3)
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

    def decode(self, index: int) -> np.ndarray:
        """Raw grey pixels ``(H, W)`` of row ``index``; ``ReaderError`` names the case on failure."""
        fmt, path = self._formats[index], self._paths[index]
        try:
            if fmt == "npz":
                array, i = self._npz_array(index), self._indices[index]
                if not 0 <= i < len(array):  # numpy would read image len + i for a negative i
                    raise IndexError(i)
                return grey(array[i])
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
        source = (self.case_ids[index], self._formats[index], self._paths[index], self._frames[index],
                  self._keys[index], self._indices[index], self._voi[index])
        return entry_path(self.cache_dir, source)

    def _store(self, entry: str, array: np.ndarray) -> None:
        """Write ``array`` to ``entry`` atomically; a read-only DATA_DIR turns the cache off."""
        try:
            store_entry(entry, array)
        except OSError as exc:
            log.warning("image cache disabled: cannot write under %s (%s)", self.cache_dir, exc)
            self.cache_dir = None

    def _write_cache_info(self, cache_dir: Path) -> None:
        """``preprocessing.json`` beside the entries (see ``medssl.data.imaging.cache``)."""
        try:
            write_cache_info(cache_dir, self.preprocessing)
        except OSError as exc:
            log.warning("image cache disabled: cannot write under %s (%s)", cache_dir, exc)
            self.cache_dir = None


def _check_pointers(manifest: pd.DataFrame, formats: list[str], data_dir: str | Path) -> None:
    """``DataError`` when an npz row's ``array_index`` or any row's ``frame`` is missing (npz),
    not a whole number or negative: a hand-edited manifest must not read another image."""
    fmt = np.asarray(formats)
    for column, rows in (("array_index", fmt == "npz"), ("frame", np.ones(len(fmt), bool))):
        if column not in manifest.columns:
            if column == "array_index" and rows.any():
                raise DataError(f"the manifest of {data_dir} has npz rows but no array_index column; re-run the ingest")
            continue
        values = pd.to_numeric(manifest[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values) & (rows if column == "array_index" else np.zeros(len(fmt), bool))
        bad = missing | (~np.isnan(values) & ((values < 0) | (values != np.round(values)) | ~np.isfinite(values)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"the manifest of {data_dir} has {column} {manifest[column].iloc[i]} in row {i}; it must be a whole "
                f"number from 0 up ({int(bad.sum())} such row(s)). Restore the manifest or re-run the ingest"
            )


def _int_column(manifest: pd.DataFrame, name: str) -> list[int]:
    if name not in manifest.columns:
        return [0] * len(manifest)
    return pd.to_numeric(manifest[name], errors="coerce").fillna(0).astype(np.int64).tolist()


def make_imaging_dataset(data_dir: Path, manifest: pd.DataFrame, preprocessing: dict[str, Any] | None) -> ImagingDataset:
    """The ``Domain.make_dataset`` of "imaging" (nothing is fitted: scaling is per image)."""
    return ImagingDataset(data_dir, manifest, preprocessing)
