"""The local engine: score chunks one after another in this process (GPU when there is one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from medssl.scoring.chunk import ChunkResult, score_chunk
from medssl.models import Model

Chunk = tuple[int, int, int]  # (chunk index, first manifest row, end row)


def run_local(
    model: Model,
    data_dir: Path,
    manifest: pd.DataFrame,
    chunks: list[Chunk],
    batch_size: int,
    num_workers: int = 0,
) -> Iterator[tuple[int, ChunkResult]]:
    """Yield ``(chunk index, result)`` for each of ``chunks`` in order.

    Only one chunk's decoded inputs are alive at a time (a DataLoader per chunk), so memory stays
    bounded whatever the manifest's length.
    """
    for chunk, start, stop in chunks:
        yield chunk, score_chunk(model, data_dir, manifest.iloc[start:stop], batch_size, num_workers)
