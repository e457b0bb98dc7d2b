"""Decoded cases held in memory: one ``(N, *shape)`` tensor instead of a decode per item per epoch.

Pretraining reads every training case once per epoch, for many epochs; a domain dataset decodes
(or reads a cache file, or a memory-mapped row) each time. ``hold_in_memory(dataset)`` decodes
every case once, stacks them, and returns an ``InMemoryCases`` over the stacked tensor when it
fits the memory budget (``memory_budget``: a quarter of the memory the system reports available,
at most ``MAX_BYTES``); otherwise it returns ``dataset`` unchanged and the loader reads it as
before. The values are the dataset's own, bit for bit.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from medssl.data.domains import CaseDataset

log = logging.getLogger(__name__)

MAX_BYTES = 4 * 2**30  # never hold more than this, however much memory is free
CHUNK = 1024  # cases fetched per batched read while filling


class InMemoryCases:
    """A ``CaseDataset`` over ``tensor`` ``(N, *shape)`` (float32), with the source's ``preprocessing``."""

    def __init__(self, tensor: torch.Tensor, preprocessing: dict[str, Any], source: Any = None) -> None:
        self.tensor = tensor
        self.preprocessing = preprocessing
        self.source = source  # the dataset it was read from (attributes such as channels stay reachable)

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        """Case ``index``: ``(*shape)``, a view of the held tensor (do not modify in place)."""
        return self.tensor[index]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """Cases ``indices`` (a DataLoader's batched fetch)."""
        return list(self.tensor[torch.as_tensor(indices, dtype=torch.int64)])

    def __getattr__(self, name: str) -> Any:  # e.g. SignalDataset.channels, EHRDataset.channels
        if name == "source" or self.__dict__.get("source") is None:
            raise AttributeError(name)
        return getattr(self.__dict__["source"], name)


def available_bytes() -> int | None:
    """Memory the system reports available (Linux ``MemAvailable``, else free pages); ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget() -> int:
    """Bytes of decoded cases worth holding: a quarter of the available memory, at most ``MAX_BYTES``."""
    free = available_bytes()
    return MAX_BYTES if free is None else min(MAX_BYTES, free // 4)


def hold_in_memory(dataset: CaseDataset, budget: int | None = None) -> CaseDataset:
    """``InMemoryCases`` with every case of ``dataset`` when they fit ``budget`` bytes
    (default ``memory_budget()``), else ``dataset`` itself. Reads batches through the dataset's
    ``__getitems__`` when it has one (vectorised decoding), else case by case."""
    n = len(dataset)
    if n == 0 or isinstance(dataset, InMemoryCases):
        return dataset
    first = dataset[0]
    need = n * first.numel() * 4
    limit = memory_budget() if budget is None else budget
    if need > limit:
        log.info("decoded cases (%.0f MB) exceed the memory budget (%.0f MB): read from the dataset each epoch",
                 need / 2**20, limit / 2**20)
        return dataset
    out = torch.empty((n, *first.shape), dtype=torch.float32)
    many = getattr(dataset, "__getitems__", None)
    for start in range(0, n, CHUNK):
        rows = list(range(start, min(start + CHUNK, n)))
        items = many(rows) if many is not None else [dataset[i] for i in rows]
        out[start : start + len(rows)] = torch.stack(list(items))
    log.debug("holding %d decoded cases in memory (%.0f MB)", n, need / 2**20)
    return InMemoryCases(out, dataset.preprocessing, source=dataset)
