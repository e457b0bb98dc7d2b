"""Benchmark ``medssl pretrain``'s loop; writes benchmarks/results/bench_pretrain.json and prints it.

Everything runs in one process, one run, with ``torch.set_num_threads(--threads)`` (2), the
measurements of each round interleaved (the machine is shared; the best time of each kept).

Images: the real PneumoniaMNIST npz (28 x 28 grey chest X-rays), ``medssl ingest images --format
npz``; SimCLR, ``small_cnn``, batch 128, ``--steps`` optimizer steps per measurement.

(1) medssl: ``medssl.pretrain`` (the public API = the CLI's code) with shipped defaults, the whole
    call (manifest, dataset, cases held in memory, batched views, Lightning, metrics.csv,
    last.ckpt, checkpoint.pt). ``loop`` is the per-step rate without the one-off start-up:
    ``(steps - 1) / (t(steps) - t(1 step))``.
(2) compute limit: the same model (medssl's simclr + small_cnn, channels-last as the loop runs
    it) doing forward + backward + AdamW step on views prepared in advance. Ratio (1)/(2): the
    issue's target is >= 0.80.
(3) plain lightly: what a user writes instead: the same 4-block CNN written out in torch,
    ``lightly.loss.NTXentLoss`` + ``lightly.models.modules.SimCLRProjectionHead``, per-sample
    torchvision v2 views (crop, flip, rotation, brightness/contrast, blur, noise: the strengths of
    medssl's defaults) in a ``DataLoader`` (batch 128, shuffle, no workers), AdamW. Ratio
    (1)/(3): the target is >= 1.5 (0.42 before this change).
(4) per-case vs batched views: the same Lightning loop (``PretrainModule``, same loader and
    trainer settings) once with today's per-case views drawn in the DataLoader
    (``benchmarks/_per_case_views.py``: the torchvision + MONAI code medssl used until now) and
    once with the batched views on the device; plus the views alone (2 x 128 per batch).

MIT-BIH (``--ecg-steps`` > 0): DS1 records ingested with ``medssl ingest signals --format wfdb``;
``configs/mitdb_micle.yaml`` (MICLe, ``ts2vec_tcn``, batch 256): (1) the whole
``medssl.pretrain`` call with the preset, (2) the same model on views prepared in advance, (4)
the per-case vs batched Lightning loop and views.

Usage: ``.venv/bin/python benchmarks/bench_pretrain.py [--steps 40] [--rounds 2] [--ecg-steps 4]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision.transforms import v2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import medssl  # noqa: E402  (the medssl figure: medssl.pretrain, the public API = the CLI's code)
from _per_case_views import per_case_image_augment, per_case_series_augment  # noqa: E402  (the old path)
from medssl.cli import main  # noqa: E402
from medssl.config import load_config  # noqa: E402
from medssl.data import get_domain, read_manifest  # noqa: E402
from medssl.data.in_memory import hold_in_memory  # noqa: E402
from medssl.data.pairs import PairDataset  # noqa: E402
from medssl.encoders import create_encoder  # noqa: E402
from medssl.methods import create_method  # noqa: E402
from medssl.train.lightning_module import PretrainModule, one_cpu_thread  # noqa: E402
from medssl.train.pretrain import tidy_lightning_logging, training_rows  # noqa: E402
from medssl.train.pretrain_config import PretrainConfig  # noqa: E402
from medssl.transforms.batched import batched  # noqa: E402

NPZ = REPO.parent / "shared" / "data" / "imaging" / "pneumoniamnist_trainval.npz"
MITDB = REPO.parent / "shared" / "data" / "signals" / "mitdb_ds1"
ECG_PRESET = REPO / "configs" / "mitdb_micle.yaml"
RESULTS = REPO / "benchmarks" / "results" / "bench_pretrain.json"
BATCH = 128


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- (2) compute limit
def compute_limit(method: nn.Module, views: list[dict[str, torch.Tensor]], steps: int, channels_last: bool) -> float:
    """Seconds for ``steps`` forward + backward + AdamW steps of ``method`` on ``views`` prepared in advance."""
    if channels_last:
        method.to(memory_format=torch.channels_last)
        views = [{k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in b.items()}
                 for b in views]
    method.train()
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)

    def run() -> None:
        for i in range(steps):
            loss = method.training_loss(views[i % len(views)])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return timed(run)


# ---------------------------------------------------------------- (3) plain lightly
class UserCNN(nn.Module):
    """The 4-block CNN as a user writes it (the architecture of medssl's small_cnn, width 32)."""

    def __init__(self) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, pool: bool) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)] + (
                [nn.MaxPool2d(2)] if pool else [])

        self.net = nn.Sequential(*block(1, 32, True), *block(32, 64, True), *block(64, 128, True),
                                 *block(128, 128, False), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TwoViews(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.t = v2.Compose([
            v2.RandomResizedCrop(28, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.RandomRotation(10)], p=0.5),
            v2.RandomApply([v2.ColorJitter(brightness=0.2, contrast=0.2)], p=0.5),
            v2.RandomApply([v2.GaussianBlur(7, sigma=(0.1, 1.0))], p=0.2),
            v2.RandomApply([v2.GaussianNoise(sigma=0.02)], p=0.2),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        return self.t(x), self.t(x)


def plain_lightly(images: torch.Tensor, steps: int) -> float:
    """Seconds for ``steps`` SimCLR steps of a user's plain lightly loop over ``images`` (N, 1, 28, 28)."""
    t0 = time.perf_counter()
    backbone, head, criterion = UserCNN(), SimCLRProjectionHead(128, 128, 128), NTXentLoss(temperature=0.1)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    loader = DataLoader(TwoViews(images), batch_size=BATCH, shuffle=True, drop_last=True)
    done = 0
    while done < steps:
        for x0, x1 in loader:
            loss = criterion(head(backbone(x0)), head(backbone(x1)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - t0


# ---------------------------------------------------------------- (4) per-case vs batched views
def lightning_loop(cases: Any, patients: list[str], cfg: PretrainConfig, per_case_augment: Callable | None,
                   batch_augment: Callable | None, encoder_kwargs: dict[str, Any], steps: int) -> float:
    """Seconds for ``steps`` steps of the pretraining Lightning loop (same module, loader and trainer
    settings as ``medssl pretrain``, no run files), views per case in the loader or per batch."""
    t0 = time.perf_counter()
    torch.manual_seed(0)
    method = create_method(cfg.method, create_encoder(cfg.encoder, **{**encoder_kwargs, **cfg.encoder_options}),
                           **cfg.method_options)
    pairs = PairDataset(cases, patients, per_case_augment, type(method).pairing, **method.pair_options)
    loader = DataLoader(pairs, batch_size=cfg.batch_size, sampler=RandomSampler(pairs), drop_last=True, num_workers=0)
    module = PretrainModule(method, optimizer=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            warmup_steps=0, augment=batch_augment)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, log_every_n_steps=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - t0


def views_per_s(cases: Any, patients: list[str], pairing: str, pair_options: dict[str, Any], per_case: Callable,
                batch_fn: Callable, batch_size: int, batches: int) -> dict[str, float]:
    """Views/s of the per-case loader path and of the raw loader + batched views (2 views per case)."""
    torch.manual_seed(0)
    old = DataLoader(PairDataset(cases, patients, per_case, pairing, **pair_options), batch_size=batch_size, shuffle=True,
                     drop_last=True)
    new = DataLoader(PairDataset(cases, patients, None, pairing, **pair_options), batch_size=batch_size, shuffle=True,
                     drop_last=True)

    def run(loader: DataLoader, fn: Callable | None) -> None:
        for i, batch in enumerate(loader):
            if fn is not None:
                with one_cpu_thread(torch.device("cpu")):  # as the loop runs them (PretrainModule)
                    fn(torch.cat([batch["view1"], batch["view2"]]))
            if i + 1 == batches:
                break

    t_old, t_new = timed(lambda: run(old, None)), timed(lambda: run(new, batch_fn))
    n = 2 * batch_size * batches
    return {"per_case_views_per_s": round(n / t_old, 1), "batched_views_per_s": round(n / t_new, 1),
            "speedup": round(t_old / t_new, 2)}


# ---------------------------------------------------------------- the two data sets
def images_part(tmp: Path, steps: int, rounds: int) -> dict[str, Any]:
    data = tmp / "pneumonia"
    assert main(["-q", "ingest", "images", "--format", "npz", str(NPZ), "--out", str(data)]) == 0
    cfg = {"method": "simclr", "encoder": "small_cnn", "batch_size": BATCH, "accelerator": "cpu", "seed": 0}
    medssl.pretrain(data, tmp / "img_warmup", cfg, max_steps=2)  # decompresses the npz once (the cache a user's 2nd run has)
    rows = training_rows(read_manifest(data), None, 0)
    dataset = get_domain("imaging").make_dataset(data, rows, None)
    cases = hold_in_memory(dataset)
    images = cases.tensor.clone()
    patients = rows["patient_id"].astype(str).tolist()
    augment = get_domain("imaging").make_augment({})
    torch.manual_seed(0)
    prepared = [{"view1": augment.batch(images[i * BATCH:(i + 1) * BATCH]), "view2": augment.batch(images[i * BATCH:(i + 1) * BATCH]),
                 "patient": torch.arange(BATCH), "index": torch.arange(BATCH)} for i in range(4)]
    pcfg = load_config(PretrainConfig, None, **cfg)
    t: dict[str, list[float]] = {k: [] for k in ("medssl", "medssl_1_step", "compute_limit", "plain_lightly",
                                                 "loop_per_case", "loop_batched")}
    for r in range(rounds):
        t["medssl"].append(timed(lambda: medssl.pretrain(data, tmp / f"img_run{r}", cfg, max_steps=steps)))
        t["medssl_1_step"].append(timed(lambda: medssl.pretrain(data, tmp / f"img_one{r}", cfg, max_steps=1)))
        torch.manual_seed(0)
        method = create_method("simclr", create_encoder("small_cnn", in_channels=1))
        t["compute_limit"].append(compute_limit(method, prepared, steps, channels_last=True))
        torch.manual_seed(0)
        t["plain_lightly"].append(plain_lightly(images, steps))
        t["loop_per_case"].append(lightning_loop(cases, patients, pcfg, per_case_image_augment({}), None, {"in_channels": 1}, steps))
        t["loop_batched"].append(lightning_loop(cases, patients, pcfg, None, batched(augment), {"in_channels": 1}, steps))
    best = {k: min(v) for k, v in t.items()}
    sps = {k: round(steps * BATCH / v, 1) for k, v in best.items() if k != "medssl_1_step"}
    sps["medssl_loop"] = round((steps - 1) * BATCH / max(1e-9, best["medssl"] - best["medssl_1_step"]), 1)
    return {
        "data": f"PneumoniaMNIST npz, {len(rows)} train cases (28x28)", "model": "small_cnn + simclr, batch 128, AdamW",
        "steps": steps, "rounds": rounds, "samples_per_s": sps,
        "ratios": {
            "medssl_vs_compute_limit": round(sps["medssl"] / sps["compute_limit"], 3),
            "medssl_loop_vs_compute_limit": round(sps["medssl_loop"] / sps["compute_limit"], 3),
            "medssl_vs_plain_lightly": round(sps["medssl"] / sps["plain_lightly"], 3),
            "batched_vs_per_case_loop": round(sps["loop_batched"] / sps["loop_per_case"], 3),
        },
        "targets": {"medssl_vs_compute_limit": 0.80, "medssl_vs_plain_lightly": 1.5},
        # the same ratios within each round (measurements minutes apart see the same load), median over rounds
        "paired_ratios_median": {
            "medssl_vs_compute_limit": round(float(np.median([c / m for m, c in zip(t["medssl"], t["compute_limit"])])), 3),
            "medssl_vs_plain_lightly": round(float(np.median([p / m for m, p in zip(t["medssl"], t["plain_lightly"])])), 3),
            "batched_vs_per_case_loop": round(float(np.median([o / n for n, o in zip(t["loop_batched"], t["loop_per_case"])])), 3),
        },
        "views": views_per_s(cases, patients, "augment", {}, per_case_image_augment({}), augment.batch, BATCH, 8),
        "seconds": {k: [round(x, 2) for x in v] for k, v in t.items()},
    }


def ecg_part(tmp: Path, steps: int) -> dict[str, Any]:
    data = tmp / "mitdb"
    t_ingest = timed(lambda: main(["-q", "ingest", "signals", str(MITDB), "--format", "wfdb", "--out", str(data)]))
    cfg = load_config(PretrainConfig, str(ECG_PRESET), accelerator="cpu")
    rows = training_rows(read_manifest(data), cfg.limit_cases, cfg.seed)
    dataset = get_domain("signals").make_dataset(data, rows, None)
    cases = hold_in_memory(dataset)
    patients = rows["patient_id"].astype(str).tolist()
    augment = get_domain("signals").make_augment(cfg.augment)
    kwargs = {"in_channels": dataset.channels}
    torch.manual_seed(0)
    method = create_method(cfg.method, create_encoder(cfg.encoder, **{**kwargs, **cfg.encoder_options}), **cfg.method_options)
    pairs = PairDataset(cases, patients, None, type(method).pairing, **method.pair_options)
    loader = DataLoader(pairs, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    prepared = []
    for i, b in enumerate(loader):
        views = augment.batch(torch.cat([b["view1"], b["view2"]]))
        prepared.append({**b, "view1": views[: cfg.batch_size], "view2": views[cfg.batch_size:]})
        if i == 1:
            break
    t = {
        "medssl": timed(lambda: medssl.pretrain(data, tmp / "ecg_run", str(ECG_PRESET), accelerator="cpu", max_steps=steps)),
        "medssl_1_step": timed(lambda: medssl.pretrain(data, tmp / "ecg_one", str(ECG_PRESET), accelerator="cpu", max_steps=1)),
        "compute_limit": compute_limit(method, prepared, steps, channels_last=False),
        "loop_per_case": lightning_loop(cases, patients, cfg, per_case_series_augment(cfg.augment), None, kwargs, steps),
        "loop_batched": lightning_loop(cases, patients, cfg, None, batched(augment), kwargs, steps),
    }
    b = cfg.batch_size
    sps = {k: round(steps * b / v, 1) for k, v in t.items() if k != "medssl_1_step"}
    sps["medssl_loop"] = round((steps - 1) * b / max(1e-9, t["medssl"] - t["medssl_1_step"]), 1)
    steps_per_epoch = len(rows) // b
    return {
        "data": f"MIT-BIH DS1, {len(rows)} train beats (2 x {dataset.length})", "preset": "configs/mitdb_micle.yaml",
        "ingest_s": round(t_ingest, 1), "steps": steps, "batch_size": b, "samples_per_s": sps,
        "ratios": {
            "medssl_vs_compute_limit": round(sps["medssl"] / sps["compute_limit"], 3),
            "medssl_loop_vs_compute_limit": round(sps["medssl_loop"] / sps["compute_limit"], 3),
            "batched_vs_per_case_loop": round(sps["loop_batched"] / sps["loop_per_case"], 3),
        },
        "preset_epoch_s_at_loop_rate": round(steps_per_epoch * b / sps["medssl_loop"], 1),
        "preset_epochs": cfg.epochs,
        "views": views_per_s(cases, patients, type(method).pairing, method.pair_options,
                             per_case_series_augment(cfg.augment), augment.batch, b, 4),
        "seconds": {k: round(v, 2) for k, v in t.items()},
    }


def main_bench() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per image measurement")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ecg-steps", type=int, default=4, help="optimizer steps per MIT-BIH measurement (0 skips it)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tidy_lightning_logging()
    tmp = Path(tempfile.mkdtemp(prefix="bench_pretrain_"))
    started = time.perf_counter()
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "benchmark": "medssl pretrain loop vs compute limit, plain lightly, and today's per-case views",
        "date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "images": images_part(tmp, args.steps, args.rounds),
    }
    if args.ecg_steps > 0:
        result["mitbih"] = ecg_part(tmp, args.ecg_steps)
    result["machine"] = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                         "cpus": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load_before],
                         "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
    result["wall_s"] = round(time.perf_counter() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main_bench()
