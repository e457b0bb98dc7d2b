"""Each transaction's context: the same entity's last N transactions before it, by time.

Stored at ingest as a small tensor store ``DATA_DIR/cache/history.pt``::

    {"case_id": [str, ...],                 # manifest order
     "index": LongTensor (n_cases, N)}      # row positions into case_id; slot 0 = most recent
                                            # previous transaction, -1 = no such transaction

Only positions are stored, never encoded values, so the encoding can be (re)fitted on the train
split later without touching the store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medssl.errors import DataError

HISTORY_NAME = "history.pt"


def history_index(entity: pd.Series, order: pd.Series | None, n_history: int) -> np.ndarray:
    """``(len(entity), n_history)`` int64 positions of each row's previous same-entity rows, -1 padded.

    ``order`` sorts each entity's rows (time); ties and ``order=None`` keep file order.
    """
    n = len(entity)
    out = np.full((n, n_history), -1, dtype=np.int64)
    if n_history <= 0 or n == 0:
        return out
    frame = pd.DataFrame({"entity": entity.astype(str).to_numpy(), "pos": np.arange(n)})
    keys = ["entity", "pos"]
    if order is not None:
        frame["order"] = order.to_numpy()
        keys = ["entity", "order", "pos"]
    frame = frame.sort_values(keys, kind="mergesort", na_position="first")
    grouped = frame.groupby("entity", sort=False)["pos"]
    for k in range(1, n_history + 1):
        prev = grouped.shift(k)
        ok = prev.notna().to_numpy()
        out[frame["pos"].to_numpy()[ok], k - 1] = prev.to_numpy()[ok].astype(np.int64)
    return out


def write_history(data_dir: str | Path, case_ids: list[str], index: np.ndarray) -> Path:
    """Save the store under ``DATA_DIR/cache/``."""
    path = Path(data_dir) / "cache" / HISTORY_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"case_id": list(map(str, case_ids)), "index": torch.as_tensor(index, dtype=torch.int64)}, path)
    return path


def read_history(data_dir: str | Path) -> tuple[list[str], torch.Tensor] | None:
    """``(case_ids, index)`` from the store, or ``None`` when the ingest built no history."""
    path = Path(data_dir) / "cache" / HISTORY_NAME
    if not path.is_file():
        return None
    try:
        store = torch.load(path, map_location="cpu", weights_only=True)
        return list(store["case_id"]), store["index"]
    except Exception as exc:  # a damaged file: torch raises many types
        raise DataError(f"{path} could not be read ({exc}); re-run `medssl ingest transactions`") from None
