"""MedMNIST-style ``.npz`` arrays: one case per image of every ``{split}_images`` array.

Layout (MedMNIST v2): ``train_images`` ``(N, H, W)`` uint8 (or ``(N, H, W, 3)`` for colour sets),
``train_labels`` ``(N, 1)``, and the same for ``val`` and ``test``. The key prefix names the split.
MedMNIST carries no patient id, so every image is its own patient (``patient_id = case_id``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medssl.atomic import atomic_write
from medssl.data.manifest import ErrorLog
from medssl.errors import DataError, ReaderError

log = logging.getLogger(__name__)

IMAGES_SUFFIX = "_images"
LABELS_SUFFIX = "_labels"
# Key prefixes that name a split; anything else gets a split assigned at ingest.
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        raise DataError(f"{path} does not exist; pass the path of a MedMNIST-style .npz file")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # OSError, ValueError, EOFError, BadZipFile, NotImplementedError (zip method)...
        raise DataError(
            f"{path} is not a readable .npz archive ({exc}); --format npz expects arrays saved "
            "with numpy.savez (keys like train_images, train_labels)"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a plain .npy: np.load returns the array itself
        raise DataError(f"{path} is a single .npy array, not an .npz archive; save it with numpy.savez(train_images=...)")
    return archive


def load_npz_array(path: str | Path, key: str, cache_dir: str | Path | None = None) -> np.ndarray:
    """The whole array ``key`` of the archive at ``path``.

    Without ``cache_dir`` it is decompressed into memory. With ``cache_dir`` (the imaging dataset
    passes ``DATA_DIR/cache/imaging/npz``) the decompressed array is also kept there as a ``.npy``
    file, named by a hash of the archive's path, the key, its size and modification time (so a
    replaced archive gets a new entry) and written atomically; later loads memory-map that file
    (read-only): no decompression, and DataLoader workers share the pages. An unreadable entry is
    rewritten; a read-only cache folder just means no cache. Raises ``ReaderError`` if the archive
    or key cannot be read.
    """
    entry = _npy_entry(Path(path), key, Path(cache_dir)) if cache_dir is not None else None
    if entry is not None and entry.is_file():
        try:
            return np.load(entry, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            log.warning("npz cache entry %s is unreadable; decompressing the archive again", entry)
    try:
        with np.load(path, allow_pickle=False) as archive:
            array = archive[key]
    except KeyError:
        raise ReaderError(str(path), f"has no array {key!r}; re-run `medssl ingest images --format npz`") from None
    except Exception as exc:  # a damaged archive raises OSError, ValueError, SyntaxError, zlib.error, BadZipFile...
        raise ReaderError(str(path), f"could not be read as .npz ({type(exc).__name__}: {str(exc)[:200]})") from None
    if entry is not None:
        _store_npy(entry, array)
    return array


def _npy_entry(path: Path, key: str, cache_dir: Path) -> Path | None:
    """Cache file of array ``key`` of ``path`` (``None`` when the archive cannot be stat'ed)."""
    try:
        st = path.stat()
    except OSError:
        return None  # the archive read below reports it
    source = "\0".join((str(path.resolve()), key, str(st.st_size), str(st.st_mtime_ns)))
    return cache_dir / (hashlib.sha256(source.encode()).hexdigest()[:32] + ".npy")


def _store_npy(entry: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``entry`` atomically; any OSError (read-only DATA_DIR, full disk) skips it."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file, not a name: np.save would append ".npy" to the name
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)

    try:
        atomic_write(entry, write)
    except OSError as exc:
        log.debug("npz cache not written (%s)", exc)


def _image_shape(images: np.ndarray) -> tuple[int, int] | None:
    """``(H, W)`` of an images array ``(N, H, W)`` or ``(N, H, W, 1|3)``; ``None`` if unsupported."""
    if images.ndim == 3:
        return int(images.shape[1]), int(images.shape[2])
    if images.ndim == 4 and images.shape[3] in (1, 3):
        return int(images.shape[1]), int(images.shape[2])
    return None


def _labels(labels: np.ndarray | None, n: int, where: str, errors: ErrorLog) -> np.ndarray | None:
    """Integer labels ``(n,)`` from ``(n,)`` or ``(n, 1)``; other shapes are reported and dropped."""
    if labels is None:
        return None
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != n:
        errors.add(
            where,
            f"labels of shape {labels.shape} do not give one class per image ({n} images); "
            "multi-label arrays are not supported, so these cases were ingested without a label",
        )
        return None
    if labels.dtype.kind not in "biuf":
        errors.add(where, f"labels of dtype {labels.dtype} are not class numbers; ingested without a label")
        return None
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.isfinite(labels).all() or not np.all(np.equal(np.mod(labels, 1), 0)):
            errors.add(where, f"labels of dtype {labels.dtype} are not whole class numbers; ingested without a label")
            return None
    return labels.astype(np.int64)


def scan_npz(path: str | Path, errors: ErrorLog) -> pd.DataFrame:
    """One manifest row per image in every ``*_images`` array of the archive at ``path``.

    Columns: ``case_id`` (``"{prefix}:{index}"``), ``patient_id`` (= case_id), ``domain``,
    ``label`` (int, when ``*_labels`` exists), ``split`` (train/val/test from the key prefix, else
    missing), ``source_format="npz"``, ``path`` (absolute), ``frame=0``, ``array_key``,
    ``array_index``, ``rows``, ``columns``. Arrays of an unsupported shape become ``errors`` rows.
    Raises ``DataError`` if the file is not an npz archive or holds no ``*_images`` array.
    """
    path = Path(path).resolve()
    frames: list[pd.DataFrame] = []
    with _open_npz(path) as archive:
        image_keys = sorted(k for k in archive.files if k.endswith(IMAGES_SUFFIX))
        if not image_keys:
            raise DataError(
                f"{path} holds no '*_images' array (keys: {sorted(archive.files)}); --format npz "
                "expects MedMNIST-style keys such as train_images and train_labels"
            )
        for key in image_keys:
            prefix = key[: -len(IMAGES_SUFFIX)]
            where = f"{path}#{key}"
            try:
                images = archive[key]
            except Exception as exc:  # object arrays; a damaged member raises ValueError, SyntaxError, zlib.error...
                errors.add(where, f"array could not be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
                continue
            shape = _image_shape(images)
            if shape is None or images.shape[0] == 0 or 0 in shape:
                errors.add(where, f"array of shape {images.shape} is not (N, H, W) or (N, H, W, 1|3) images with N, H, W > 0")
                continue
            if images.dtype.kind not in "biuf":
                errors.add(where, f"array of dtype {images.dtype} holds no pixel numbers (expected integers or floats)")
                continue
            ok = np.ones(images.shape[0], bool)
            if images.dtype.kind == "f":
                ok = np.isfinite(images.reshape(images.shape[0], -1)).all(axis=1)
                if not ok.any():
                    errors.add(where, "every image holds NaN or infinite pixels", count=int(images.shape[0]))
                    continue
                if not ok.all():
                    errors.add(where, "image(s) with NaN or infinite pixels skipped", count=int((~ok).sum()))
            n = int(images.shape[0])
            label_key = prefix + LABELS_SUFFIX
            try:
                raw_labels = archive[label_key] if label_key in archive.files else None
            except Exception as exc:  # as above
                errors.add(f"{path}#{label_key}", f"labels could not be read ({type(exc).__name__}); ingested without a label")
                raw_labels = None
            labels = _labels(raw_labels, n, f"{path}#{label_key}", errors)
            case_ids = [f"{prefix}:{i}" for i in range(n)]
            frame = pd.DataFrame(
                {
                    "case_id": case_ids,
                    "patient_id": case_ids,
                    "domain": "imaging",
                    "source_format": "npz",
                    "path": str(path),
                    "frame": np.zeros(n, dtype=np.int64),
                    "array_key": key,
                    "array_index": np.arange(n, dtype=np.int64),
                    "rows": np.full(n, shape[0], dtype=np.int64),
                    "columns": np.full(n, shape[1], dtype=np.int64),
                    "split": SPLIT_NAMES.get(prefix.lower()),
                }
            )
            if labels is not None:
                frame.insert(3, "label", labels)
            frames.append(frame[ok].reset_index(drop=True))
            log.info("%s: %d images of %dx%d%s", key, n, shape[0], shape[1], "" if labels is None else " with labels")
    if not frames:
        return pd.DataFrame(columns=["case_id", "patient_id", "domain"])
    return pd.concat(frames, ignore_index=True)
