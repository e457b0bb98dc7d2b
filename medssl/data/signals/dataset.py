"""The signals dataset: item ``i`` is one window ``(C, T)`` float32 for manifest row ``i``.

Windows live in ``DATA_DIR/signals/windows-<ingest id>.npy`` (N, C, T) float32, memory-mapped,
the file the manifest's ingest record names (``signals/windows.npy`` in data dirs from before
records); the manifest's ``row`` column points into it. Each channel is standardised with the mean/std of the
manifest's ``split == "train"`` windows (all windows without a split column), kept in
``preprocessing`` so fine-tuning and scoring apply the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medssl.data.record import check_same_ingest, read_record, recorded_file
from medssl.data.rows import row_indices
from medssl.errors import DataError

WINDOWS_FILE = Path("signals") / "windows.npy"
FIT_ROWS = 20000  # windows used to fit the statistics (a random subset when there are more)


def write_windows(path: str | Path, windows: np.ndarray) -> Path:
    """Write ``windows`` (N, C, T) as float32 ``.npy`` to the file ``path``."""
    with open(path, "wb") as fh:  # a file, not a name: np.save would append ".npy" to the name
        np.save(fh, np.ascontiguousarray(windows, dtype=np.float32))
    return Path(path)


def save_windows(data_dir: Path, windows: np.ndarray) -> Path:
    """Write ``windows`` (N, C, T) float32 to ``DATA_DIR/signals/windows.npy`` (the layout before
    ingest records; ingests use ``write_windows`` on the path ``IngestWriter`` gives)."""
    path = Path(data_dir) / WINDOWS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_windows(path, windows)


def load_windows(data_dir: Path) -> np.ndarray:
    """Memory-mapped ``(N, C, T)`` windows the manifest of ``data_dir`` names; ``DataError`` when
    missing, unreadable, or not the file the manifest's ingest wrote."""
    path = recorded_file(data_dir, "windows", WINDOWS_FILE, "medssl ingest signals SRC")
    if not path.is_file():
        raise DataError(f"{path} does not exist; run `medssl ingest signals SRC --out {data_dir}` first")
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:  # truncated or not a .npy file
        raise DataError(f"{path} could not be read ({exc}); re-run `medssl ingest signals SRC --out {data_dir}`") from None


class SignalDataset(Dataset):
    """Standardised windows of one data dir, in manifest order."""

    def __init__(self, data_dir: Path, manifest: pd.DataFrame, preprocessing: dict[str, Any] | None = None) -> None:
        check_same_ingest(manifest, data_dir, read_record(data_dir))
        self.windows = load_windows(data_dir)
        if self.windows.ndim != 3:
            raise DataError(f"the windows of {data_dir} have shape {self.windows.shape}, not (N, C, T); re-run the ingest")
        if "row" not in manifest.columns:
            raise DataError(f"the manifest of {data_dir} has no row column; re-run `medssl ingest signals`")
        self.rows = row_indices(manifest, "row", self.windows.shape[0], data_dir)
        _, c, t = self.windows.shape
        if preprocessing is None:
            train = self.rows[(manifest["split"] == "train").to_numpy()] if "split" in manifest.columns else self.rows
            if len(train) == 0:
                raise DataError(f"the manifest of {data_dir} has no split == 'train' rows to fit normalisation on")
            if len(train) > FIT_ROWS:
                train = np.random.default_rng(0).choice(train, FIT_ROWS, replace=False)
            sample = np.asarray(self.windows[np.sort(train)], dtype=np.float64)
            std = sample.std(axis=(0, 2))
            preprocessing = {
                "kind": "signal_windows", "channels": c, "length": t,
                "mean": sample.mean(axis=(0, 2)).tolist(), "std": np.where(std > 1e-8, std, 1.0).tolist(),
            }
        if (preprocessing["channels"], preprocessing["length"]) != (c, t):
            raise DataError(
                f"{data_dir} holds windows of {c} channels x {t} samples but the model expects "
                f"{preprocessing['channels']} x {preprocessing['length']}; re-ingest with the same leads and window"
            )
        self.preprocessing = preprocessing
        self._mean = torch.tensor(preprocessing["mean"], dtype=torch.float32)[:, None]
        self._std = torch.tensor(preprocessing["std"], dtype=torch.float32)[:, None]
        self.channels, self.length = c, t

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        """One window ``(C, T)`` float32, standardised per channel."""
        x = torch.from_numpy(np.array(self.windows[self.rows[index]], dtype=np.float32))
        return (x - self._mean) / self._std


def make_signal_dataset(data_dir: Path, manifest: pd.DataFrame, preprocessing: dict[str, Any] | None) -> SignalDataset:
    """``Domain.make_dataset`` for ``signals``."""
    return SignalDataset(Path(data_dir), manifest, preprocessing)
