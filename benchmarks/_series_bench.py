"""Shared glue of the two series label-efficiency benchmarks (PhysioNet 2012, MIT-BIH).

- ``ingest_once``: run ``medssl ingest`` into a scratch data dir unless it is already there;
- ``resplit_train_test``: overwrite the manifest's split with a patient-level train/test split
  (the ingest draws train/val/test 70/15/15; the benchmarks want train/test only);
- ``pretrain_once``: ``medssl.train.pretrain.pretrain`` cached on its config (DONE.json);
- ``random_encoder_checkpoint``: an "encoder" checkpoint of an untrained encoder of any name,
  with the data's domain and preprocessing, so supervised-from-scratch runs go through the same
  ``fit_classifier(init="random")`` path as everything else even when the architecture differs
  from the pretrained one (e.g. a GRU baseline beside a TS2Vec CNN);
- ``fit_predict``: fit one classifier on labelled rows and return class probabilities on the
  evaluation rows.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medssl.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from medssl.cli import main as cli
from medssl.data import assign_patient_splits, read_manifest, write_manifest
from medssl.encoders.registry import create_encoder
from medssl.models import embed
from medssl.train.finetune import FinetuneConfig, FinetuneData, fit_classifier
from medssl.train.classifier import proba_from_embeddings
from medssl.train.pretrain import pretrain
from medssl.train.pretrain_config import PretrainConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"


def ingest_once(argv: list[str], data_dir: Path) -> float:
    """Run ``medssl ingest ARGV --out DATA_DIR`` unless DATA_DIR has a manifest; returns seconds (0 if cached)."""
    if (data_dir / "manifest.parquet").is_file():
        return 0.0
    start = time.perf_counter()
    code = cli(["-q", "ingest", *argv, "--out", str(data_dir)])
    if code != 0:
        raise SystemExit(f"ingest failed with exit code {code}: {argv}")
    return time.perf_counter() - start


def resplit_train_test(data_dir: Path, test_fraction: float, seed: int) -> dict[str, int]:
    """Rewrite ``split`` as a patient-level train/test split (stratified on each patient's majority label).

    Idempotent for a given (fraction, seed). Returns counts of cases and patients per split.
    """
    manifest = read_manifest(data_dir)
    manifest["split"] = assign_patient_splits(manifest, val_fraction=0.0, test_fraction=test_fraction, seed=seed)
    write_manifest(manifest, data_dir)
    counts: dict[str, int] = {}
    for split, part in manifest.groupby("split"):
        counts[f"{split}_cases"] = len(part)
        counts[f"{split}_patients"] = int(part["patient_id"].nunique())
    return counts


def pretrain_once(data_dir: Path, run_dir: Path, config: PretrainConfig) -> float:
    """Pretrain into RUN_DIR unless RUN_DIR/DONE.json records the same config; returns its seconds."""
    done = run_dir / "DONE.json"
    wanted = config.model_dump(mode="json")
    if done.is_file() and json.loads(done.read_text())["config"] == wanted:
        return float(json.loads(done.read_text())["seconds"])
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    pretrain(data_dir, run_dir, config)
    seconds = time.perf_counter() - start
    done.write_text(json.dumps({"config": wanted, "seconds": seconds}))
    return seconds


def random_encoder_checkpoint(source: Path, out: Path, name: str, kwargs: dict[str, Any], seed: int = 0) -> Path:
    """An "encoder" checkpoint of a randomly initialised ``name`` encoder, with ``source``'s domain and preprocessing."""
    src = load_checkpoint(source, expect_kind="encoder")
    torch.manual_seed(seed)
    encoder = create_encoder(name, **kwargs)
    meta = {**src.meta, "encoder": {"name": name, "kwargs": kwargs}, "method": "none (random init)"}
    return save_checkpoint(out, Checkpoint(kind="encoder", meta=meta, states={"encoder": encoder.state_dict()}))


def fit_predict(
    data: FinetuneData,
    subset: np.ndarray,
    eval_rows: np.ndarray,
    config: FinetuneConfig,
    frozen: torch.Tensor | None = None,
) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Fit ``config.mode`` on ``subset`` rows; returns (proba ``(len(eval_rows), C)``, classes, train log).

    Early stopping (full mode) holds out labelled patients of ``subset`` (``val_rows=[]`` would
    disable it; ``None`` lets ``fit_classifier`` hold them out since the manifest has no val split).
    ``frozen`` ``(N, F)``: embeddings of every row by the checkpoint's encoder (linear/knn only).
    """
    result = fit_classifier(data, subset, None, config, frozen_embeddings=frozen)
    if frozen is not None and config.mode != "full" and config.init == "pretrained":
        emb = frozen[torch.as_tensor(eval_rows, dtype=torch.long)]
    else:
        emb = embed(result.encoder, data.dataset, eval_rows, desc="embedding evaluation cases")
    proba = np.asarray(proba_from_embeddings(result.head, result.knn, emb, len(result.classes)), dtype=np.float64)
    return proba, result.classes, result.train_log
