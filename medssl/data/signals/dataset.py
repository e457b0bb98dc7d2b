"""The signals dataset: item ``i`` is one window ``(C, T)`` float32 for manifest row ``i``.

Windows live in ``DATA_DIR/signals/windows-<ingest id>.npy`` (N, C, T) float32, memory-mapped,
the file the manifest's ingest record names (``signals/windows.npy`` in data dirs from before
records); the manifest's ``row`` column points into it. Each channel is standardised with the mean/std of the
manifest's ``split == "train"`` windows (all windows without a split column), kept in
``preprocessing`` so fine-tuning and scoring apply the same numbers.

Side features: when the manifest holds the RR-interval columns of WFDB beats
(``medssl.data.signals.rr_features``), each becomes one more input channel, constant over the
window: ``log(value)`` standardised with the train split's mean/std, clipped to +-5, NaN (a
record's first/last beat) -> 0 (the train mean). An item is then ``(C + K, T)``: the encoder sees
the beat and its rhythm, and the signals few-label recipe reads the K values back
(``side_values``). ``preprocessing["side_features"]`` names the columns (absent: no side channels,
as in data dirs and checkpoints from before side features).
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
from medssl.data.signals.rr_features import RR_COLUMNS
from medssl.errors import DataError

WINDOWS_FILE = Path("signals") / "windows.npy"
FIT_ROWS = 20000  # windows used to fit the statistics (a random subset when there are more)
SIDE_CLIP = 5.0  # standardised side features are clipped to +-SIDE_CLIP
MIN_SIDE_COVERAGE = 0.5  # a side column becomes a channel when at least this share of train rows has it


def _log_side(manifest: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """``log`` of the side columns ``(N, K)`` float64; NaN where missing or not positive."""
    values = manifest[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(values)
    return np.where(np.isfinite(out), out, np.nan)


def fit_side_features(manifest: pd.DataFrame, train: np.ndarray) -> dict[str, Any]:
    """``{"side_features": columns, "side_mean": [...], "side_std": [...]}`` of the RR columns that
    at least ``MIN_SIDE_COVERAGE`` of the ``train`` manifest rows (bool ``(N,)``) hold; ``{}`` if none."""
    columns = [c for c in RR_COLUMNS if c in manifest.columns]
    if not columns or not train.any():
        return {}
    logs = _log_side(manifest.loc[train], columns)
    keep = np.isfinite(logs).mean(axis=0) >= MIN_SIDE_COVERAGE
    if not keep.any():
        return {}
    logs = logs[:, keep]
    std = np.nanstd(logs, axis=0)
    return {"side_features": [c for c, k in zip(columns, keep) if k], "side_mean": np.nanmean(logs, axis=0).tolist(),
            "side_std": np.where(std > 1e-8, std, 1.0).tolist()}


def side_matrix(manifest: pd.DataFrame, preprocessing: dict[str, Any], data_dir: Path) -> np.ndarray | None:
    """Standardised side features ``(N, K)`` float32 of the manifest rows (see the module doc), or
    ``None`` when ``preprocessing`` names none. ``DataError`` when the manifest lacks a named column."""
    columns = list(preprocessing.get("side_features") or [])
    if not columns:
        return None
    missing = [c for c in columns if c not in manifest.columns]
    if missing:
        raise DataError(f"the model reads the side features {missing} but the manifest of {data_dir} has no such "
                        "column; re-ingest it with this medssl (`medssl ingest signals ... --format wfdb`)")
    z = (_log_side(manifest, columns) - np.asarray(preprocessing["side_mean"])) / np.asarray(preprocessing["side_std"])
    return np.clip(np.nan_to_num(z, nan=0.0), -SIDE_CLIP, SIDE_CLIP).astype(np.float32)


def side_values(x: torch.Tensor, preprocessing: dict[str, Any]) -> np.ndarray:
    """The standardised side features ``(B, K)`` float64 carried by items ``x`` ``(B, C + K, T)``
    (the median over time of each side channel: unchanged by a few masked or noisy steps);
    ``(B, 0)`` when ``preprocessing`` names none."""
    k = len(preprocessing.get("side_features") or [])
    if k == 0:
        return np.zeros((x.shape[0], 0))
    return x[:, -k:, :].detach().cpu().double().median(dim=2).values.numpy()


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
            train_rows = (manifest["split"] == "train").to_numpy() if "split" in manifest.columns else np.ones(len(manifest), bool)
            preprocessing = {
                "kind": "signal_windows", "channels": c, "length": t,
                "mean": sample.mean(axis=(0, 2)).tolist(), "std": np.where(std > 1e-8, std, 1.0).tolist(),
                **fit_side_features(manifest, train_rows),
            }
        if (preprocessing["channels"], preprocessing["length"]) != (c, t):
            raise DataError(
                f"{data_dir} holds windows of {c} channels x {t} samples but the model expects "
                f"{preprocessing['channels']} x {preprocessing['length']}; re-ingest with the same leads and window"
            )
        self.preprocessing = preprocessing
        self._mean = torch.tensor(preprocessing["mean"], dtype=torch.float32)[:, None]
        self._std = torch.tensor(preprocessing["std"], dtype=torch.float32)[:, None]
        side = side_matrix(manifest.reset_index(drop=True), preprocessing, data_dir)
        self.side = None if side is None else torch.from_numpy(side)
        self.channels = c + (0 if side is None else side.shape[1])  # what the encoder reads
        self.length = t

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        """One window ``(C, T)`` float32, standardised per channel; ``(C + K, T)`` with side channels."""
        x = torch.from_numpy(np.array(self.windows[self.rows[index]], dtype=np.float32))
        x = (x - self._mean) / self._std
        if self.side is None:
            return x
        return torch.cat([x, self.side[index][:, None].expand(-1, self.length)])


def make_signal_dataset(data_dir: Path, manifest: pd.DataFrame, preprocessing: dict[str, Any] | None) -> SignalDataset:
    """``Domain.make_dataset`` for ``signals``."""
    return SignalDataset(Path(data_dir), manifest, preprocessing)
