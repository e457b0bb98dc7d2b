"""Builders shared by the scoring tests: real data dirs and real model files (no pytest tests here).

Data: the real PneumoniaMNIST npz (MedMNIST v2) from ../shared/data, ingested with the imaging
domain's npz scanner. Models: the registered ``small_cnn`` encoder (seeded init), an
``nn.Linear`` head and a kNN anomaly scorer fitted on the train embeddings, saved through
``medssl.checkpoints`` exactly as ``medssl finetune`` / ``medssl pretrain`` lay their files out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from medssl.checkpoints import Checkpoint, save_checkpoint
from medssl.data import ErrorLog, get_domain, write_manifest
from medssl.data.imaging.npz import scan_npz
from medssl.encoders.registry import create_encoder
from medssl.anomaly import create_scorer

NPZ = "imaging/pneumoniamnist_trainval.npz"
ENCODER = {"name": "small_cnn", "kwargs": {"in_channels": 1, "width": 8}}
PREPROCESSING = {"size": 28}
SCORE_COLUMNS = [
    "case_id", "patient_id", "domain", "anomaly_score", "anomaly_percentile", "flagged",
    "predicted_label", "predicted_proba", "model_id", "scored_at", "explanation",
]


def npz_data_dir(shared_data: Path, data_dir: Path, n_train: int, n_val: int) -> pd.DataFrame:
    """Write a DATA_DIR with ``n_train`` train (half normal, half pneumonia) and the first ``n_val`` val cases."""
    full = scan_npz(shared_data / NPZ, ErrorLog())
    train = full[full["split"] == "train"]
    train = pd.concat([train[train["label"] == 0].iloc[: n_train // 2], train[train["label"] == 1].iloc[: n_train - n_train // 2]])
    manifest = pd.concat([train.sort_index(), full[full["split"] == "val"].iloc[:n_val]], ignore_index=True)
    write_manifest(manifest, data_dir)
    return manifest


def png_data_dir(shared_data: Path, root: Path, n: int) -> tuple[Path, pd.DataFrame]:
    """PNG files cut from the real val images + an imaging manifest over them (source_format image)."""
    with np.load(shared_data / NPZ) as z:
        images, labels = z["val_images"][:n], z["val_labels"][:n].reshape(-1)
    src = root / "png"
    src.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (img, label) in enumerate(zip(images, labels)):
        path = src / f"img_{i:03d}.png"
        Image.fromarray(img).save(path)
        rows.append({
            "case_id": f"png/{path.name}", "patient_id": f"p{i // 2}", "domain": "imaging",
            "label": int(label), "split": "train" if i < n // 2 else "val", "source_format": "image",
            "path": str(path), "frame": 0,
        })
    manifest = pd.DataFrame(rows)
    data_dir = root / "data"
    write_manifest(manifest, data_dir)
    return data_dir, manifest


def embed_all(encoder: torch.nn.Module, data_dir: Path, manifest: pd.DataFrame) -> torch.Tensor:
    """Embeddings ``(N, D)`` of every manifest row, computed in one plain forward pass."""
    ds = get_domain("imaging").make_dataset(data_dir, manifest, PREPROCESSING)
    with torch.inference_mode():
        return encoder.eval()(torch.stack([ds[i] for i in range(len(ds))]))


def build_model_file(
    path: Path, data_dir: Path, manifest: pd.DataFrame, kind: str = "model", seed: int = 0
) -> Path:
    """A model file over ``small_cnn``: kind "model" (head + kNN scorer) or "encoder" (neither)."""
    torch.manual_seed(seed)
    encoder = create_encoder(ENCODER["name"], **ENCODER["kwargs"])
    meta = {"encoder": ENCODER, "domain": "imaging", "preprocessing": dict(PREPROCESSING), "method": "none"}
    states = {"encoder": encoder.state_dict()}
    tensors: dict[str, torch.Tensor] = {}
    if kind == "model":
        train = manifest[manifest["split"] == "train"].reset_index(drop=True)
        scorer = create_scorer("knn", k=5).fit(embed_all(encoder, data_dir, train))
        head = torch.nn.Linear(encoder.num_features, 2)
        states["head"] = head.state_dict()
        tensors = {f"scorer/{k}": v for k, v in scorer.state_dict().items()}
        meta.update(classes=["normal", "pneumonia"], scorer={"name": "knn", "kwargs": {"k": 5}}, mode="linear")
    return save_checkpoint(path, Checkpoint(kind=kind, meta=meta, states=states, tensors=tensors))


def without_time(df: pd.DataFrame) -> pd.DataFrame:
    """Scores without ``scored_at`` (the only column that differs between two runs)."""
    return df.drop(columns=["scored_at"]).reset_index(drop=True)
