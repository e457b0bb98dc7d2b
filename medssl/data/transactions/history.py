"""Each transaction's context: the same entity's last N transactions before it, by time.

Stored at ingest as a small tensor store ``DATA_DIR/transactions/history-<ingest id>.pt`` (named
by the manifest's ingest record; ``cache/history.pt`` in data dirs from before records)::

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

from medssl.data.record import read_record, recorded_file
from medssl.errors import DataError

HISTORY_NAME = "history.pt"
HISTORY_FILE = "transactions/history.pt"  # IngestWriter names it transactions/history-<id>.pt
LEGACY_FILE = Path("cache") / HISTORY_NAME


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


def write_history(path: str | Path, case_ids: list[str], index: np.ndarray) -> Path:
    """Save the store to the file ``path``."""
    torch.save({"case_id": list(map(str, case_ids)), "index": torch.as_tensor(index, dtype=torch.int64)}, path)
    return Path(path)


def read_history(data_dir: str | Path) -> tuple[list[str], torch.Tensor] | None:
    """``(case_ids, index)`` from the store, or ``None`` when the ingest built no history."""
    record = read_record(data_dir)
    if record is not None and "history" not in record.get("files", {}):
        return None
    path = recorded_file(data_dir, "history", LEGACY_FILE, "medssl ingest transactions SRC")
    if not path.is_file():
        return None
    try:
        store = torch.load(path, map_location="cpu", weights_only=True)
        return list(store["case_id"]), store["index"]
    except Exception as exc:  # a damaged file: torch raises many types
        raise DataError(f"{path} could not be read ({exc}); re-run `medssl ingest transactions`") from None
