"""Embeddings of a frozen encoder kept between fine-tunes of one DATA_DIR.

A data scientist fine-tunes one checkpoint many times (1% and 10% of the labels, several seeds,
another recipe): with a frozen encoder every run embeds the same cases again, and on 50,000 ECG
beats that pass is most of the run. ``EmbeddingCache`` keeps them in
``DATA_DIR/cache/embeddings/<key>.npz``: ``emb`` ``(N, D)`` float32 (row i = manifest row i) and
``done`` ``(N,)`` bool (rows computed so far). The key hashes everything the embeddings depend on:
the encoder's weights and buffers (its ``state_dict``, so a fine-tuned encoder never reads a
pretrained one's embeddings), its class, the checkpoint's preprocessing and the manifest's case ids
in order. A cache file that cannot be read is logged and rebuilt; deleting the folder is always safe.
Files are written atomically, so a crash mid-write leaves the previous file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from medssl.atomic import atomic_write

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when what an embedding means changes (e.g. the inference form)
MAX_BYTES = 2 * 1024**3  # larger caches (N * D * 4 bytes) are not kept: the run embeds as before


def embeddings_cache_root(data_dir: str | Path) -> Path:
    """``DATA_DIR/cache/embeddings``."""
    return Path(data_dir) / "cache" / "embeddings"


def encoder_fingerprint(encoder: nn.Module) -> str:
    """sha256 over the encoder's class and every ``state_dict`` entry (name, dtype, shape, bytes)."""
    h = hashlib.sha256(f"{CACHE_VERSION}:{type(encoder).__module__}.{type(encoder).__qualname__}".encode())
    for name, value in sorted(encoder.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class EmbeddingCache:
    """Per-row embeddings ``(N, D)`` of one encoder on one manifest, filled as rows are computed."""

    def __init__(self, path: Path, n_rows: int) -> None:
        self.path = path
        self.n_rows = n_rows
        self.emb: np.ndarray | None = None  # (N, D) float32, allocated on the first put
        self.done = np.zeros(n_rows, dtype=bool)
        self.dirty = False
        if path.is_file():
            self._load()

    @classmethod
    def for_run(cls, data_dir: str | Path, encoder: nn.Module, preprocessing: dict[str, Any] | None,
                case_ids: Sequence[Any]) -> "EmbeddingCache":
        """The cache of ``encoder`` (as it is now) with ``preprocessing`` on a manifest of ``case_ids``."""
        h = hashlib.sha256(encoder_fingerprint(encoder).encode())
        h.update(json.dumps(preprocessing or {}, sort_keys=True, default=str).encode())
        h.update("\n".join(str(c) for c in case_ids).encode())
        return cls(embeddings_cache_root(data_dir) / f"{h.hexdigest()[:24]}.npz", len(case_ids))

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as z:
                emb, done = np.asarray(z["emb"], dtype=np.float32), np.asarray(z["done"], dtype=bool)
            if emb.ndim != 2 or emb.shape[0] != self.n_rows or done.shape != (self.n_rows,):
                raise ValueError(f"shape {emb.shape} / {done.shape} for {self.n_rows} manifest rows")
            self.emb, self.done = emb, done
        except Exception as exc:  # noqa: BLE001 - a broken cache is rebuilt, never fatal
            log.warning("embedding cache %s unreadable (%s): embedding again", self.path, exc)

    def missing(self, rows: np.ndarray) -> bool:
        """Whether any of ``rows`` has no embedding yet."""
        return not bool(self.done[rows].all())

    def get(self, rows: np.ndarray) -> torch.Tensor:
        """``(len(rows), D)`` float32 embeddings of rows that are all done."""
        assert self.emb is not None
        return torch.from_numpy(self.emb[rows])

    def put(self, rows: np.ndarray, emb: torch.Tensor) -> None:
        """Keep the ``(len(rows), D)`` embeddings of ``rows``."""
        values = emb.detach().float().cpu().numpy()
        if self.emb is None or self.emb.shape[1] != values.shape[1]:
            self.emb = np.zeros((self.n_rows, values.shape[1]), dtype=np.float32)
            self.done[:] = False
        self.emb[rows] = values
        self.done[rows] = True
        self.dirty = True

    def save(self) -> None:
        """Write the file (atomically) when rows were added and it is not over ``MAX_BYTES``."""
        if not self.dirty or self.emb is None:
            return
        if self.emb.nbytes > MAX_BYTES:
            log.info("embeddings of %d cases (%.1f GiB) are not cached", self.n_rows, self.emb.nbytes / 1024**3)
            return

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, emb=self.emb, done=self.done)

        atomic_write(self.path, write)
        self.dirty = False
