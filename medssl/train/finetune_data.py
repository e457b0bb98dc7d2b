"""What fine-tuning reads once per DATA_DIR + checkpoint: manifest, domain dataset, labels, splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import Dataset

from medssl.checkpoints import Checkpoint, load_checkpoint
from medssl.data import get_domain, read_manifest
from medssl.errors import ConfigError, LabelError
from medssl.train.labels import load_labels

log = logging.getLogger(__name__)


@dataclass
class FinetuneData:
    """Everything loaded once per DATA_DIR + checkpoint; row indices refer to ``manifest`` rows."""

    checkpoint: Checkpoint
    manifest: pd.DataFrame
    dataset: Dataset
    labels: np.ndarray  # (N,) object: label string or None
    patient_ids: np.ndarray  # (N,) str
    split: np.ndarray | None  # (N,) str or None when the manifest has no split column
    label_source: str
    validation_labels: str | None = None  # where the val split's labels come from: "labels CSV", "manifest", None

    def rows_of(self, split: str) -> np.ndarray:
        """Row indices of one split (all rows when the manifest has no split column)."""
        if self.split is None:
            return np.arange(len(self.manifest))
        return np.flatnonzero(self.split == split)

    def train_pool(self) -> np.ndarray:
        """(N,) bool: the rows labelled subsets are drawn from (train split, or all rows)."""
        if self.split is None or not (self.split == "train").any():
            log.warning("the manifest has no train split: labelled cases are drawn from every row")
            return np.ones(len(self.manifest), dtype=bool)
        return self.split == "train"


def load_data(checkpoint: str | Path, data_dir: str | Path, labels_csv: str | Path | None = None) -> FinetuneData:
    """Read the checkpoint, the manifest, the domain dataset (checkpoint preprocessing) and labels."""
    ckpt = load_checkpoint(checkpoint)
    manifest = read_manifest(data_dir)
    domain_name = ckpt.meta.get("domain")
    if domain_name is None:
        raise ConfigError(f"{checkpoint} names no domain in its meta; re-create it with `medssl pretrain`")
    if "domain" in manifest.columns and not (manifest["domain"].astype(str) == domain_name).all():
        found = sorted(set(manifest["domain"].astype(str)))
        raise ConfigError(f"{checkpoint} was trained on {domain_name!r} data but {data_dir} holds {found}")
    dataset = get_domain(domain_name).make_dataset(Path(data_dir), manifest, ckpt.meta.get("preprocessing"))
    labels = load_labels(manifest, labels_csv).to_numpy(dtype=object).copy()  # writable: val labels may be filled in
    split = manifest["split"].astype(str).to_numpy() if "split" in manifest.columns else None
    source = str(labels_csv) if labels_csv is not None else "manifest"
    validation = _validation_labels(labels, manifest, split, labels_csv is not None)
    return FinetuneData(ckpt, manifest, dataset, labels, manifest["patient_id"].astype(str).to_numpy(), split, source,
                        validation)


def _validation_labels(labels: np.ndarray, manifest: pd.DataFrame, split: np.ndarray | None, from_csv: bool) -> str | None:
    """Where the val split's labels come from; fills ``labels`` (N,) in place from the manifest when needed.

    A labels CSV usually names a few train cases only: its val rows then carry no label, and the
    manifest's own labels of the val split (when it has some) validate instead. Returns
    ``"labels CSV"``, ``"manifest"`` or ``None`` (no labelled val case).
    """
    if split is None or not (split == "val").any():
        return None
    val = split == "val"
    if from_csv and pd.notna(labels[val]).any():
        return "labels CSV"
    if from_csv and "label" in manifest.columns:
        try:
            own = load_labels(manifest).to_numpy(dtype=object)
        except LabelError:  # the manifest's label column is empty
            return None
        labels[val] = own[val]
    return "manifest" if pd.notna(labels[val]).any() else None

