"""The transactions dataset: one float32 vector per manifest row.

Item layout (``F`` = row width from ``encoding.py``: scaled numerics, missing indicators,
categorical indices as floats):

- without history: ``(F,)``, the encoded transaction;
- with ``N`` history slots: ``((1 + N) * (F + 1),)``, i.e. ``(1 + N, F + 1)`` flattened: slot 0 is
  the transaction itself, slots 1..N its entity's previous transactions (most recent first); the
  last entry of each slot is 1 when the slot holds a transaction, 0 for padding (padding slots
  are zeros). ``entity_sequence`` reshapes it; ``tabular_mlp`` / ``ft_transformer`` use slot 0.

``preprocessing`` = the encoding recipe (fitted on ``split == "train"`` rows when not given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medssl.data.manifest import read_manifest
from medssl.data.record import check_same_ingest, read_record
from medssl.data.transactions.encoding import encode_rows, fit_preprocessing
from medssl.data.transactions.history import read_history
from medssl.data.transactions.schema import TableSchema
from medssl.errors import DataError


def train_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    """The rows preprocessing is fitted on: ``split == "train"`` when a split column exists."""
    if "split" in manifest.columns and manifest["split"].notna().any():
        return manifest[manifest["split"] == "train"]
    return manifest


class TransactionDataset(Dataset):
    """``dataset[i]`` -> float32 tensor for row ``i`` of ``manifest`` (layout in the module doc)."""

    def __init__(self, data_dir: str | Path, manifest: pd.DataFrame, preprocessing: dict[str, Any] | None = None) -> None:
        self.data_dir = Path(data_dir)
        check_same_ingest(manifest, self.data_dir, read_record(self.data_dir))
        store = read_history(self.data_dir)
        if preprocessing is None:
            schema = TableSchema.read(self.data_dir)
            n_hist = int(store[1].shape[1]) if store is not None else 0
            preprocessing = fit_preprocessing(train_rows(manifest), schema, history=n_hist)
        self.preprocessing = preprocessing
        own = torch.from_numpy(encode_rows(manifest, preprocessing))
        self.history = int(preprocessing["history"])
        if self.history == 0:
            self.items = own
            return
        if store is None:
            raise DataError(
                f"the model uses {self.history} history slots but {self.data_dir} has no history store; "
                "ingest with --entity-col (and --history N)"
            )
        case_ids, index = store
        if index.shape[1] < self.history:
            raise DataError(
                f"{self.data_dir} stores {index.shape[1]} history slots, the model needs {self.history}; "
                f"re-ingest with --history {self.history}"
            )
        full = read_manifest(self.data_dir)
        if full["case_id"].tolist() != case_ids:
            raise DataError(f"the history store of {self.data_dir} does not match the manifest; re-run the ingest")
        full_x = torch.from_numpy(encode_rows(full, preprocessing))
        position = pd.Series(np.arange(len(case_ids)), index=pd.Index(case_ids))
        rows = position.reindex(manifest["case_id"].astype(str)).to_numpy()
        hist = torch.full((len(manifest), self.history), -1, dtype=torch.int64)
        known = ~np.isnan(rows.astype(np.float64))
        hist[torch.from_numpy(known)] = index[torch.from_numpy(rows[known].astype(np.int64)), : self.history]
        present = hist >= 0
        slots = torch.zeros(len(manifest), 1 + self.history, own.shape[1] + 1)
        slots[:, 0, :-1] = own
        slots[:, 0, -1] = 1.0
        slots[:, 1:, :-1] = full_x[hist.clamp(min=0)] * present.unsqueeze(-1)
        slots[:, 1:, -1] = present.float()
        self.items = slots.reshape(len(manifest), -1)

    @property
    def layout(self) -> dict[str, Any]:
        """Encoder kwargs that follow from the data: n_numeric, cardinalities, history."""
        return {
            "n_numeric": int(self.preprocessing["n_numeric"]),
            "cardinalities": list(self.preprocessing["cardinalities"]),
            "history": self.history,
        }

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.items[index]
