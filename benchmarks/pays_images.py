"""Does pretraining pay on PneumoniaMNIST? medssl with shipped defaults against what a user builds
without medssl, on the same labels, in one run, on validation and on perturbed validation.

Rows (every one fitted on the same labelled train cases: a seeded stratified draw of 1% or 10% of
the train split, written as a ``case_id,label`` CSV, seeds 0-2):

- ``medssl``: ``medssl pretrain --config configs/pneumoniamnist.yaml`` (the shipped preset, run as a
  new process exactly as a user types it), then ``medssl finetune --labels CSV`` with the shipped
  defaults (``--mode auto``) as a new process; probabilities from ``medssl.load_model``;
- ``medssl_random_init``: the same encoder as initialised (the preset with ``--lr 1e-12 --max-steps
  1``) through the same ``medssl finetune``: "pretraining bought X" is ``medssl`` minus this row;
- ``medssl_init_random``: ``medssl finetune --config`` a YAML with ``init: random`` (the same fine-tune from a random encoder, but
  the encoder trained at the head's learning rate, as suits a random start): medssl's own from-scratch row;
- ``scratch_cnn``: a 4-block CNN trained from scratch on the labelled images with torchvision
  augmentation and a class-balanced loss (what a user writes in a notebook);
- ``lightly_simclr``: a plain-lightly SimCLR glue (``SimCLRTransform``, ``NTXentLoss``,
  ``SimCLRProjectionHead``, the same 4-block CNN) pretrained on the train images for
  ``--glue-minutes``, then a class-balanced logistic regression on its embeddings.

Evaluation: AUROC on the official val split (524 images) and on perturbed copies of it that stand
for another scanner or site (contrast, gamma up and down, blur, noise, half resolution); the worst
perturbation is reported beside val. Writes ``benchmarks/results/pays_images.json`` and prints a
table (mean, std over seeds, and each seed).

    .venv/bin/python benchmarks/pays_images.py [--seeds 3] [--fractions 0.01,0.1] [--glue-minutes 3]
        [--rows medssl,medssl_random_init,scratch_cnn,lightly_simclr] [--work /tmp/pays_images]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
NPZ = ROOT.parent / "shared" / "data" / "imaging" / "pneumoniamnist_trainval.npz"
PRESET = ROOT / "configs" / "pneumoniamnist.yaml"
RESULTS = ROOT / "benchmarks" / "results"
ROWS = ("medssl", "medssl_random_init", "medssl_init_random", "scratch_cnn", "lightly_simclr")


def perturbations(images: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """``{name: (N, 28, 28) uint8}``: val as stored and as another site might deliver it."""
    x = images.astype(np.float64) / 255.0
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=(1, 2), keepdims=True)
    half = np.stack([np.asarray(Image.fromarray(im).resize((14, 14), Image.BILINEAR).resize((28, 28), Image.BILINEAR))
                     for im in images]).astype(np.float64) / 255.0
    out = {
        "clean": x,
        "contrast_0.6": mean + 0.6 * (x - mean),
        "gamma_0.6": x ** 0.6,
        "gamma_1.6": x ** 1.6,
        "blur_1.0": np.stack([gaussian_filter(im, 1.0) for im in x]),
        "noise_0.06": x + rng.normal(0, 0.06, x.shape),
        "half_resolution": half,
    }
    return {k: (np.clip(v, 0, 1) * 255).round().astype(np.uint8) for k, v in out.items()}


def run(cmd: list[str]) -> None:
    """Run a medssl command as a new process; stop the benchmark with its stderr when it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def medssl_bin() -> str:
    return str(Path(sys.executable).with_name("medssl"))


def prepare(work: Path) -> tuple[Path, dict[str, Path], dict[str, np.ndarray]]:
    """Ingest train+val (pretraining, fine-tuning) and one val-only DATA_DIR per perturbation."""
    arrays = dict(np.load(NPZ))
    data = work / "data"
    if not (data / "manifest.parquet").exists():
        run([medssl_bin(), "ingest", "images", str(NPZ), "--format", "npz", "--out", str(data)])
    evals, perturbed = {}, perturbations(arrays["val_images"])
    for name, images in perturbed.items():
        out = work / f"val_{name}"
        if not (out / "manifest.parquet").exists():
            work.mkdir(parents=True, exist_ok=True)
            npz = work / f"val_{name}.npz"
            np.savez(npz, val_images=images, val_labels=arrays["val_labels"])
            run([medssl_bin(), "ingest", "images", str(npz), "--format", "npz", "--out", str(out)])
        evals[name] = out
    return data, evals, perturbed


def labelled_subset(data: Path, fraction: float, seed: int, work: Path) -> tuple[Path, np.ndarray]:
    """A stratified draw of ``fraction`` of the train cases as ``case_id,label`` CSV; returns it and the
    drawn rows' indices into the npz train array (case ids ``train:<i>``)."""
    manifest = pd.read_parquet(data / "manifest.parquet")
    train = manifest[manifest["split"] == "train"]
    picked, _ = train_test_split(train, train_size=fraction, stratify=train["label"], random_state=seed)
    path = work / f"labels_{fraction}_{seed}.csv"
    picked[["case_id", "label"]].to_csv(path, index=False)
    index = np.array([int(str(c).rsplit(":", 1)[-1]) for c in picked["case_id"]])
    return path, index


def medssl_auroc(model_path: Path, evals: dict[str, Path], y: np.ndarray) -> dict[str, float]:
    """AUROC of a fine-tuned medssl model on each evaluation DATA_DIR (its rows are the val images in order)."""
    import medssl

    model = medssl.load_model(model_path)
    positive = model.classes.index("1")
    return {name: float(roc_auc_score(y, model.predict_proba(d)[:, positive])) for name, d in evals.items()}


def small_cnn(width: int = 32) -> nn.Sequential:
    """Four conv blocks (conv-BN-ReLU-pool), global average pool: ``(B, 1, 28, 28) -> (B, 4 * width)``."""
    chans, layers = [1, width, 2 * width, 4 * width, 4 * width], []
    for a, b in zip(chans, chans[1:]):
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) / 255.0


def scratch_cnn(images: np.ndarray, y: np.ndarray, seed: int, steps: int = 400) -> nn.Module:
    """The notebook baseline: CNN from scratch, flips/crops/rotation/jitter, class-balanced loss."""
    from torchvision.transforms import v2

    torch.manual_seed(seed)
    model = nn.Sequential(small_cnn(), nn.Linear(128, 2))
    aug = v2.Compose([v2.RandomResizedCrop(28, scale=(0.7, 1.0), antialias=True), v2.RandomRotation(10),
                      v2.ColorJitter(brightness=0.2, contrast=0.2)])
    x, target = to_tensor(images), torch.as_tensor(y)
    weight = torch.as_tensor(len(y) / (2 * np.bincount(y, minlength=2).clip(1)), dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (32,), generator=gen)
        batch = torch.stack([aug(im) for im in x[idx]])
        loss = nn.functional.cross_entropy(model(batch), target[idx], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def lightly_glue(train_images: np.ndarray, minutes: float, seed: int = 0) -> nn.Module:
    """Plain lightly SimCLR on the train images for ``minutes``; returns the backbone ``(B,1,28,28)->(B,128)``."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    torch.manual_seed(seed)
    backbone, head = small_cnn(), SimCLRProjectionHead(128, 128, 64)
    transform = SimCLRTransform(input_size=28, min_scale=0.3, cj_hue=0.0, cj_sat=0.0, random_gray_scale=0.0,
                                gaussian_blur=0.0, normalize=None)
    images = [Image.fromarray(im).convert("RGB") for im in train_images]

    class Views(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> list[torch.Tensor]:
            return [v.mean(0, keepdim=True) for v in transform(images[i])]

    loader = torch.utils.data.DataLoader(Views(), batch_size=128, shuffle=True, drop_last=True, num_workers=1)
    params = list(backbone.parameters()) + list(head.parameters())
    opt, loss_fn, end = torch.optim.AdamW(params, lr=1e-3), NTXentLoss(temperature=0.5), time.time() + 60 * minutes
    while time.time() < end:
        for v0, v1 in loader:
            loss = loss_fn(head(backbone(v0)), head(backbone(v1)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if time.time() >= end:
                break
    return backbone.eval()


def torch_auroc(model: nn.Module, perturbed: dict[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
    with torch.no_grad():
        return {k: float(roc_auc_score(y, torch.softmax(model(to_tensor(v)), 1)[:, 1].numpy())) for k, v in perturbed.items()}


def probe_auroc(backbone: nn.Module, images: np.ndarray, y: np.ndarray, perturbed: dict[str, np.ndarray],
                y_val: np.ndarray) -> dict[str, float]:
    with torch.no_grad():
        scaler = StandardScaler().fit(emb := backbone(to_tensor(images)).numpy())
        clf = LogisticRegression(class_weight="balanced", max_iter=3000).fit(scaler.transform(emb), y)
        return {k: float(roc_auc_score(y_val, clf.predict_proba(scaler.transform(backbone(to_tensor(v)).numpy()))[:, 1]))
                for k, v in perturbed.items()}


def pretrain_medssl(data: Path, work: Path, random_init: bool) -> tuple[Path, float]:
    """``medssl pretrain --config configs/pneumoniamnist.yaml`` (reused when done); returns the checkpoint, seconds."""
    out = work / ("pretrain_random" if random_init else "pretrain")
    done = out / "DONE.json"
    if done.exists():
        return out / "checkpoint.pt", json.loads(done.read_text())["seconds"]
    start = time.time()
    extra = ["--lr", "1e-12", "--max-steps", "1"] if random_init else []
    run([medssl_bin(), "pretrain", "--data", str(data), "--out", str(out), "--config", str(PRESET), *extra])
    seconds = time.time() - start
    done.write_text(json.dumps({"seconds": seconds}))
    return out / "checkpoint.pt", seconds


def summarise(results: dict[str, dict[str, list[dict[str, float]]]]) -> list[dict[str, object]]:
    """One row per (row, fraction): mean and std over seeds of clean val AUROC and of the worst perturbation."""
    table = []
    for key, per_seed in results.items():
        row, fraction = key.rsplit("@", 1)
        clean = [s["clean"] for s in per_seed]
        worst = [min(v for k, v in s.items() if k != "clean") for s in per_seed]
        table.append({"row": row, "fraction": float(fraction), "val_mean": float(np.mean(clean)),
                      "val_std": float(np.std(clean)), "val_seeds": clean, "worst_perturbed_mean": float(np.mean(worst)),
                      "worst_perturbed_std": float(np.std(worst)), "per_perturbation_mean": {
                          k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]}})
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fractions", default="0.01,0.1")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--glue-minutes", type=float, default=3.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pays_images"))
    parser.add_argument("--out", type=Path, default=RESULTS / "pays_images.json")
    args = parser.parse_args(argv)
    rows = args.rows.split(",")
    if unknown := set(rows) - set(ROWS):
        parser.error(f"unknown rows {sorted(unknown)}; pick from {', '.join(ROWS)}")
    if not NPZ.exists():
        sys.exit(f"{NPZ} is missing: this benchmark reads the shared PneumoniaMNIST file")
    args.work.mkdir(parents=True, exist_ok=True)
    arrays = dict(np.load(NPZ))
    y_val = arrays["val_labels"].ravel().astype(int)
    data, evals, perturbed = prepare(args.work)
    results: dict[str, list[dict[str, float]]] = {}
    timing: dict[str, float] = {}
    checkpoints = {}
    if "medssl" in rows:
        checkpoints["medssl"], timing["medssl_pretrain_s"] = pretrain_medssl(data, args.work, random_init=False)
    if "medssl_random_init" in rows:
        checkpoints["medssl_random_init"], _ = pretrain_medssl(data, args.work, random_init=True)
    finetunes = [(row, ckpt, []) for row, ckpt in checkpoints.items()]
    if "medssl_init_random" in rows:
        (yaml := args.work / "init_random.yaml").write_text("init: random\n")
        finetunes.append(("medssl_init_random", pretrain_medssl(data, args.work, random_init=True)[0], ["--config", str(yaml)]))
    glue, glue_path = None, args.work / f"lightly_simclr_{args.glue_minutes}min.pt"
    if "lightly_simclr" in rows and glue_path.exists():
        glue = small_cnn().eval()
        glue.load_state_dict(torch.load(glue_path, weights_only=True))
    elif "lightly_simclr" in rows:
        start = time.time()
        glue = lightly_glue(arrays["train_images"], args.glue_minutes)
        timing["lightly_simclr_pretrain_s"] = time.time() - start
        torch.save(glue.state_dict(), glue_path)
    for fraction in [float(f) for f in args.fractions.split(",")]:
        for seed in range(args.seeds):
            csv, index = labelled_subset(data, fraction, seed, args.work)
            images, y = arrays["train_images"][index], arrays["train_labels"].ravel()[index].astype(int)
            for row, ckpt, extra in finetunes:
                out = args.work / f"ft_{row}_{fraction}_{seed}"
                run([medssl_bin(), "finetune", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out),
                     "--labels", str(csv), "--overwrite", *extra])
                results.setdefault(f"{row}@{fraction}", []).append(medssl_auroc(out / "model.pt", evals, y_val))
            if "scratch_cnn" in rows:
                results.setdefault(f"scratch_cnn@{fraction}", []).append(torch_auroc(scratch_cnn(images, y, seed), perturbed, y_val))
            if glue is not None:
                results.setdefault(f"lightly_simclr@{fraction}", []).append(probe_auroc(glue, images, y, perturbed, y_val))
            print(f"fraction {fraction} seed {seed}: " + ", ".join(
                f"{k.split('@')[0]} {v[-1]['clean']:.3f}" for k, v in results.items() if k.endswith(f"@{fraction}")), flush=True)
    table = summarise(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"table": table, "timing_s": timing, "per_seed": results,
                                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=1))
    print(f"\n{'row':<20} {'labels':>6} {'val AUROC':>16} {'worst perturbed':>16}  per seed (val)")
    for r in table:
        print(f"{r['row']:<20} {r['fraction']:>6.0%} {r['val_mean']:>9.3f} ± {r['val_std']:.3f} "
              f"{r['worst_perturbed_mean']:>9.3f} ± {r['worst_perturbed_std']:.3f}  "
              + " ".join(f"{v:.3f}" for v in r["val_seeds"]))
    print(f"timing: {timing}; wrote {args.out}")


if __name__ == "__main__":
    main()
