"""Benchmark ``medssl pretrain``; writes benchmarks/results/bench_pretrain.json and prints it.

Data: the real PneumoniaMNIST npz (28x28 grey chest X-rays), ingested with
``medssl ingest images --format npz`` into a temporary DATA_DIR.

(a) Throughput: training samples/s of ``medssl.train.pretrain`` (the whole call, as the CLI runs
    it: manifest, dataset with a warm decode cache, pair dataset + augmentation, Lightning Trainer,
    metrics.csv, last.ckpt and checkpoint.pt) against a bare torch loop with the same encoder
    (small_cnn), method and loss (simclr, NT-Xent), optimizer (AdamW), batch size, augmentation
    (the imaging domain's) and number of steps, over the same cases already decoded in memory.
    The two alternate ``--rounds`` times; the best time of each is kept (the machine is shared).
    Target ratio >= 0.90.
(b) Sanity: linear-probe AUROC on the val split (logistic regression on frozen embeddings of the
    labelled train split) after a fixed short pretraining budget (``--probe-steps``) for simclr and
    micle, and for the same encoder at random initialisation. PneumoniaMNIST has one image per
    patient, so MICLe runs on its single-image fallback here.

Usage: ``.venv/bin/python benchmarks/bench_pretrain.py [--steps 40] [--rounds 2] [--probe-steps 60]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medssl.checkpoints import load_checkpoint  # noqa: E402
from medssl.cli import main  # noqa: E402
from medssl.data import get_domain, read_manifest  # noqa: E402
from medssl.data.pairs import PairDataset  # noqa: E402
from medssl.encoders import create_encoder  # noqa: E402
from medssl.methods import create_method  # noqa: E402
import medssl  # noqa: E402  (the medssl figure: medssl.pretrain, the public API = the CLI's code)
from medssl.train.pretrain import training_rows  # noqa: E402  (baseline side: the same training rows)

NPZ = REPO.parent / "shared" / "data" / "imaging" / "pneumoniamnist_trainval.npz"
RESULTS = REPO / "benchmarks" / "results" / "bench_pretrain.json"


def bare_loop(images: torch.Tensor, patients: list[str], steps: int, batch_size: int, seed: int) -> float:
    """Seconds for ``steps`` SimCLR steps in plain torch over ``images`` ``(N, 1, 28, 28)``."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    augment = get_domain("imaging").make_augment({})
    pairs = PairDataset(list(images), patients, augment, "augment")
    loader = DataLoader(pairs, batch_size=batch_size, shuffle=True, drop_last=True)
    method = create_method("simclr", create_encoder("small_cnn", in_channels=1))
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)
    done = 0
    while done < steps:
        for batch in loader:
            loss = method.training_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - t0


def embed(data_dir: Path, ckpt_path: Path | None, rows, preprocessing) -> np.ndarray:
    """``(N, F)`` frozen embeddings of ``rows`` (random-init encoder when ``ckpt_path`` is None)."""
    torch.manual_seed(0)
    enc = create_encoder("small_cnn", in_channels=1)
    if ckpt_path is not None:
        enc.load_state_dict(load_checkpoint(ckpt_path, "encoder").states["encoder"])
    enc.eval()
    ds = get_domain("imaging").make_dataset(data_dir, rows, preprocessing)
    with torch.inference_mode():
        return torch.cat([enc(torch.stack([ds[i] for i in range(s, min(s + 512, len(ds)))]))
                          for s in range(0, len(ds), 512)]).numpy()


def probe_auroc(data_dir: Path, ckpt_path: Path | None, preprocessing) -> float:
    df = read_manifest(data_dir)
    train, val = df[df["split"] == "train"].reset_index(drop=True), df[df["split"] == "val"].reset_index(drop=True)
    x_tr, x_va = embed(data_dir, ckpt_path, train, preprocessing), embed(data_dir, ckpt_path, val, preprocessing)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    clf = LogisticRegression(max_iter=2000).fit((x_tr - mean) / std, train["label"].astype(int))
    return float(roc_auc_score(val["label"].astype(int), clf.predict_proba((x_va - mean) / std)[:, 1]))


def main_bench() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--probe-steps", type=int, default=60)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_pretrain_"))
    data = tmp / "data"
    assert main(["-q", "ingest", "images", "--format", "npz", str(NPZ), "--out", str(data)]) == 0
    n_cases = args.steps * args.batch_size
    cfg = {"method": "simclr", "encoder": "small_cnn", "batch_size": args.batch_size, "max_steps": args.steps,
           "limit_cases": n_cases, "accelerator": "cpu", "seed": 0}
    medssl.pretrain(data, tmp / "warmup", cfg)  # fills the decode cache: both loops then start from decoded data
    rows = training_rows(read_manifest(data), n_cases, 0)
    ds = get_domain("imaging").make_dataset(data, rows, None)
    images = torch.stack([ds[i] for i in range(len(ds))])
    bare, ours = [], []
    for r in range(args.rounds):
        bare.append(bare_loop(images, rows["patient_id"].tolist(), args.steps, args.batch_size, 0))
        t0 = time.perf_counter()
        medssl.pretrain(data, tmp / f"run{r}", cfg)
        ours.append(time.perf_counter() - t0)
    samples = args.steps * args.batch_size
    probe_cfg = {"encoder": "small_cnn", "batch_size": args.batch_size, "max_steps": args.probe_steps,
                 "accelerator": "cpu", "seed": 0, "method_options": {"temperature": 0.1}}
    probe = {"random_init": probe_auroc(data, None, ds.preprocessing)}
    for method in ("simclr", "micle"):
        ck = medssl.pretrain(data, tmp / f"probe_{method}", {**probe_cfg, "method": method})
        probe[method] = probe_auroc(data, ck, load_checkpoint(ck).meta["preprocessing"])
    result = {
        "benchmark": "medssl pretrain (Lightning loop, whole call) vs bare torch loop; linear-probe AUROC",
        "data": "PneumoniaMNIST npz (real, 28x28); throughput on a warm decode cache",
        "model": "small_cnn (128 features) + simclr (NT-Xent, T=0.1), AdamW",
        "steps": args.steps, "batch_size": args.batch_size, "rounds": args.rounds,
        "throughput": {
            "bare_samples_per_s": round(samples / min(bare), 1),
            "pretrain_samples_per_s": round(samples / min(ours), 1),
            "ratio": round(min(bare) / min(ours), 3),
            "target_ratio": 0.90,
            "seconds": {"bare": [round(t, 3) for t in bare], "pretrain": [round(t, 3) for t in ours]},
        },
        "linear_probe_val_auroc": {
            "pretrain_steps": args.probe_steps,
            **{k: round(v, 4) for k, v in probe.items()},
        },
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main_bench()
