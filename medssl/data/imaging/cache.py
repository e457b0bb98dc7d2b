"""The persistent cache of preprocessed imaging cases.

Each decoded, scaled and resized image is saved as
``DATA_DIR/cache/imaging/<preprocessing hash>/<xx>/<case hash>.f32`` (raw float32, S*S values: no
header to parse, so a cached read is one small file read). The case hash covers the case id and its
source (path, frame, array); file names never contain ids in clear. A ``preprocessing.json`` in the
folder says what its entries hold. Entries are written atomically (``medssl.atomic``: a temporary
file renamed over the entry), so a crash never leaves a half-written entry (and an entry of the
wrong length is recomputed), and DataLoader workers (``num_workers > 0``) can fill the cache
concurrently. Entries are keyed by where a case comes from, not by the file's content: if files are
replaced in place, delete ``DATA_DIR/cache/imaging`` (or ingest into a new DATA_DIR).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medssl.atomic import write_bytes, write_json

CACHE_VERSION = 1  # bump when the pipeline changes so old cache entries are not reused
CACHE_DTYPE = np.dtype("<f4")  # entries are raw little-endian float32, S*S values, no header
CACHE_SUFFIX = ".f32"


def imaging_cache_root(data_dir: str | Path) -> Path:
    """``DATA_DIR/cache/imaging``: one folder per preprocessing, plus ``npz/`` (decompressed arrays)."""
    return Path(data_dir) / "cache" / "imaging"


def preprocessing_key(preprocessing: dict[str, Any]) -> str:
    """A short hash naming the cache folder of one preprocessing."""
    text = json.dumps({"v": CACHE_VERSION, **preprocessing}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def entry_path(cache_dir: str | Path, source: tuple[Any, ...]) -> str:
    """The entry file of the case whose id and source fields are ``source``."""
    digest = hashlib.sha256("\0".join(str(v) for v in source).encode()).hexdigest()[:32]
    return os.path.join(cache_dir, digest[:2], digest + CACHE_SUFFIX)


def read_entry(entry: str, size: int) -> torch.Tensor | None:
    """The cached image ``(1, size, size)`` float32, or ``None`` when it is missing, unreadable or
    of the wrong length (a short file is never trusted)."""
    try:
        cached = np.fromfile(entry, dtype=CACHE_DTYPE)
    except (FileNotFoundError, OSError, ValueError):
        return None
    if cached.size != size * size:
        return None
    return torch.from_numpy(cached.astype(np.float32, copy=False).reshape(1, size, size))


def store_entry(entry: str, array: np.ndarray) -> None:
    """Write ``array`` to ``entry`` atomically (raw float32); ``OSError`` when it cannot be written."""
    write_bytes(entry, np.ascontiguousarray(array, dtype=CACHE_DTYPE).tobytes())


def write_cache_info(cache_dir: Path, preprocessing: dict[str, Any]) -> None:
    """``preprocessing.json`` beside the entries, so a person can tell cache folders apart
    (written once; ``OSError`` when it cannot be written)."""
    info = cache_dir / "preprocessing.json"
    if info.is_file():
        return
    write_json({"cache_version": CACHE_VERSION, **preprocessing}, info, allow_nan=True)
