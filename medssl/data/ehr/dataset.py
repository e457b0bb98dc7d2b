"""The EHR dataset: item ``i`` is one float32 tensor ``(2C, T)`` for manifest row ``i``.

Channel layout (``C = V + S``: V time-series variables then S static descriptors)::

    [0, V)      values of each variable, standardised with train statistics; 0 where unobserved
    [V, C)      static descriptors (Age, Gender, ...), standardised, repeated over time; 0 if unknown
    [C, C+V)    observation mask of each variable (1 = measured in that bin)
    [C+V, 2C)   mask of each static descriptor (constant over time)

So the second half of the channels is always the mask of the first half: encoders take
``mask_channels = C`` and the series augmentations leave masks binary.

``preprocessing`` (saved in checkpoints) holds the variable and static names, the grid and the
per-channel ``mean``/``std`` fitted on the observed values of the manifest's ``split == "train"``
rows (all rows when there is no split column). Re-applied to another data dir, variables are
matched by name; a variable that dir lacks is all-unobserved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medssl.data.ehr.grid import GridStore
from medssl.data.record import check_same_ingest, read_record
from medssl.data.rows import row_indices
from medssl.errors import DataError


def fit_normalisation(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over observed entries of ``values`` (N, C, ...) -> (C,), (C,).

    Channels never observed get mean 0, std 1; a constant channel gets std 1.
    """
    axes = (0,) + tuple(range(2, values.ndim))
    count = mask.sum(axis=axes)
    filled = np.where(mask > 0, values, 0.0).astype(np.float64)
    mean = filled.sum(axis=axes) / np.maximum(count, 1)
    centred = np.where(mask > 0, values - mean.reshape((1, -1) + (1,) * (values.ndim - 2)), 0.0)
    var = (centred.astype(np.float64) ** 2).sum(axis=axes) / np.maximum(count - 1, 1)
    std = np.sqrt(var)
    std = np.where((count > 1) & (std > 1e-8), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


class EHRDataset(Dataset):
    """Binned EHR stays of one data dir, in manifest order (see the module docstring)."""

    def __init__(self, data_dir: Path, manifest: pd.DataFrame, preprocessing: dict[str, Any] | None = None) -> None:
        check_same_ingest(manifest, data_dir, read_record(data_dir))
        grid = GridStore.load(data_dir)
        if "grid_row" not in manifest.columns:
            raise DataError(f"the manifest of {data_dir} has no grid_row column; re-run `medssl ingest ehr`")
        rows = row_indices(manifest, "grid_row", len(grid.case_ids), data_dir)
        if len(rows) and not np.array_equal(grid.case_ids[rows].astype(str), manifest["case_id"].astype(str).to_numpy()):
            raise DataError(
                f"the grid of {data_dir} holds other stays than its manifest's grid_row column says (a manifest and "
                f"grid of different ingests?); re-run `medssl ingest ehr SRC --out {data_dir}`"
            )
        values, mask = grid.values[rows], grid.mask[rows]
        static = grid.static[rows]
        if preprocessing is None:
            train = (manifest["split"] == "train").to_numpy() if "split" in manifest.columns else np.ones(len(rows), bool)
            if not train.any():
                raise DataError(f"the manifest of {data_dir} has no split == 'train' rows to fit normalisation on")
            mean_v, std_v = fit_normalisation(values[train], mask[train])
            mean_s, std_s = fit_normalisation(static[train], (~np.isnan(static[train])).astype(np.float32))
            preprocessing = {
                "kind": "ehr_grid", "variables": grid.variables, "static_names": grid.static_names,
                "hours": grid.hours, "step_hours": grid.step_hours,
                "mean": [float(x) for x in np.concatenate([mean_v, mean_s])],
                "std": [float(x) for x in np.concatenate([std_v, std_s])],
            }
        self.preprocessing = preprocessing
        values, mask = _align(values, mask, grid.variables, preprocessing["variables"])
        s_mask = (~np.isnan(static)).astype(np.float32)[..., None]
        static, s_mask = _align(static[..., None], s_mask, grid.static_names, preprocessing["static_names"])
        t = values.shape[-1]
        if abs(grid.step_hours - preprocessing["step_hours"]) > 1e-9 or t * grid.step_hours != preprocessing["hours"]:
            raise DataError(
                f"{data_dir} was binned at {grid.step_hours} h over {grid.hours} h but the model expects "
                f"{preprocessing['step_hours']} h over {preprocessing['hours']} h; re-ingest with matching --hours/--step-hours"
            )
        data = np.concatenate([values, np.repeat(static, t, axis=-1)], axis=1)
        masks = np.concatenate([mask, np.repeat(s_mask, t, axis=-1)], axis=1)
        mean = np.asarray(preprocessing["mean"], np.float32)[None, :, None]
        std = np.asarray(preprocessing["std"], np.float32)[None, :, None]
        data = np.where(masks > 0, (data - mean) / std, 0.0).astype(np.float32)
        self.tensor = torch.from_numpy(np.concatenate([data, masks], axis=1).astype(np.float32))
        self.channels = data.shape[1]

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        """One stay as ``(2C, T)`` float32 (values then masks)."""
        return self.tensor[index]


def _align(values: np.ndarray, mask: np.ndarray, have: list[str], want: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Reorder channel axis 1 from names ``have`` to ``want``; absent names become unobserved."""
    if list(have) == list(want):
        return values, mask
    index = pd.Index(have).get_indexer(want)
    shape = (values.shape[0], len(want)) + values.shape[2:]
    out_v, out_m = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    found = index >= 0
    out_v[:, found], out_m[:, found] = values[:, index[found]], mask[:, index[found]]
    return out_v, out_m


def make_ehr_dataset(data_dir: Path, manifest: pd.DataFrame, preprocessing: dict[str, Any] | None) -> EHRDataset:
    """``Domain.make_dataset`` for ``ehr``."""
    return EHRDataset(Path(data_dir), manifest, preprocessing)
