"""The pretrain loop on real PneumoniaMNIST images through `medssl ingest images --format npz`.

Fast tests use a 240-image cut of the real file; the slow ones (loss falls over ~1000 images,
kill-and-resume in a subprocess, 2-process DDP on CPU) run the CLI as a user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.checkpoints import load_checkpoint
from medssl.cli import main
from medssl.config import load_config
from medssl.data import get_domain, read_manifest, write_manifest
from medssl.encoders import create_encoder
from medssl.errors import ConfigError
from medssl.methods import create_method
from medssl.train.lightning_module import warmup_cosine
from medssl.train.pretrain import pretrain
from medssl.train.pretrain_config import PretrainConfig
from medssl.train.run_files import truncate_metrics

REPO = Path(__file__).resolve().parents[1]
NPZ = "imaging/pneumoniamnist_trainval.npz"
FAST = {"epochs": 1, "batch_size": 16, "encoder_options": {"width": 8}, "num_workers": 0, "accelerator": "cpu"}


def _ingest(src: Path, out: Path) -> Path:
    assert main(["-q", "ingest", "images", "--format", "npz", str(src), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def small_data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 train + 40 val real images, ingested."""
    real = np.load(shared_data / NPZ)
    tmp = tmp_path_factory.mktemp("pneumonia_small")
    cut = tmp / "pneumonia_cut.npz"
    np.savez(cut, train_images=real["train_images"][:240], train_labels=real["train_labels"][:240],
             val_images=real["val_images"][:40], val_labels=real["val_labels"][:40])
    return _ingest(cut, tmp / "data")


@pytest.fixture(scope="module")
def full_data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _ingest(shared_data / NPZ, tmp_path_factory.mktemp("pneumonia") / "data")


def _metrics(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv")


def test_warmup_cosine_schedule() -> None:
    assert [warmup_cosine(s, 4, 12) for s in (0, 1, 3)] == [0.25, 0.5, 1.0]
    assert warmup_cosine(4, 4, 12) == 1.0
    assert warmup_cosine(8, 4, 12) == pytest.approx(0.5)
    assert warmup_cosine(12, 4, 12) == pytest.approx(0.0)
    assert warmup_cosine(0, 0, 10) == 1.0


def test_pretrain_writes_a_self_describing_encoder(small_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    path = pretrain(small_data, run, {**FAST, "method": "simclr", "limit_cases": 96})
    assert path == run / "checkpoint.pt"
    raw = torch.load(path, weights_only=True)  # plain containers only
    assert raw["kind"] == "encoder"
    ckpt = load_checkpoint(path, expect_kind="encoder")
    meta = ckpt.meta
    assert meta["encoder"] == {"name": "small_cnn", "kwargs": {"in_channels": 1, "width": 8}}
    assert (meta["domain"], meta["method"], meta["n_cases"], meta["global_step"]) == ("imaging", "simclr", 96, 6)
    assert meta["preprocessing"]["size"] == 28 and meta["input_shape"] == [1, 28, 28]
    assert meta["config"]["limit_cases"] == 96
    enc = create_encoder(meta["encoder"]["name"], **meta["encoder"]["kwargs"])
    enc.load_state_dict(ckpt.states["encoder"])
    assert enc(torch.rand(3, 1, 28, 28)).shape == (3, 32)
    # a conv encoder trained on CPU in the channels-last layout (faster); its weights load as usual
    conv = ckpt.states["encoder"]["features.1.0.weight"]  # (16, 8, 3, 3): the layouts differ
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert torch.equal(enc.state_dict()["features.1.0.weight"], conv)
    m = _metrics(run)
    assert list(m.columns) == ["epoch", "step", "loss", "lr"] and m["step"].tolist() == list(range(1, 7))
    assert np.isfinite(m["loss"]).all()
    saved = load_config(PretrainConfig, run / "config.yaml")
    assert saved.method == "simclr" and saved.encoder_options == {"width": 8}
    torch.load(run / "last.ckpt", weights_only=True)  # Lightning's state loads without pickled code


def test_resume_continues_at_the_saved_step(small_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = {**FAST, "method": "byol", "limit_cases": 64}
    pretrain(small_data, run, cfg)  # 1 epoch = 4 steps
    first = load_checkpoint(run / "checkpoint.pt").states["encoder"]
    # An interrupted second epoch may have left rows past the checkpoint: resume must drop them.
    with (run / "metrics.csv").open("a") as fh:
        fh.write("1,5,0.1,0.001\n1,6,0.1,0.001\n")
    with pytest.raises(ConfigError, match="already holds a pretraining run"):
        pretrain(small_data, run, cfg)
    pretrain(small_data, run, {**cfg, "epochs": 2}, resume=True)
    meta = load_checkpoint(run / "checkpoint.pt").meta
    assert (meta["epoch"], meta["global_step"]) == (2, 8)
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 8
    assert _metrics(run)["step"].tolist() == list(range(1, 9))  # no repeated, no missing step
    assert _metrics(run)["epoch"].tolist() == [0] * 4 + [1] * 4
    second = load_checkpoint(run / "checkpoint.pt").states["encoder"]
    assert not torch.equal(first["features.0.0.weight"], second["features.0.0.weight"])


def test_micle_pairs_images_of_one_patient_end_to_end(small_data: Path, tmp_path: Path) -> None:
    grouped = tmp_path / "grouped"
    df = read_manifest(small_data)
    df["patient_id"] = [f"p{i // 3}" for i in range(len(df))]  # three images per patient
    write_manifest(df, grouped)
    pretrain(grouped, tmp_path / "run", {**FAST, "method": "micle", "max_steps": 3})
    meta = load_checkpoint(tmp_path / "run" / "checkpoint.pt").meta
    assert (meta["method"], meta["global_step"], meta["n_cases"], meta["n_patients"]) == ("micle", 3, 240, 80)


def test_truncate_metrics_keeps_steps_up_to_the_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "metrics.csv"
    p.write_text("epoch,step,loss,lr\n0,1,2.0,0.1\n0,2,1.5,0.1\n1,3,1.0,0.1\n")
    assert truncate_metrics(p, 2) == 2
    assert pd.read_csv(p)["step"].tolist() == [1, 2]


def test_bad_input_gives_one_clear_line(small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def fails(argv: list[str], match: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err

    out = str(tmp_path / "run")
    fails(["pretrain", "--data", str(small_data), "--out", out, "--method", "simclrr"], "Did you mean 'simclr'")
    fails(["pretrain", "--data", str(tmp_path / "nothing"), "--out", out], "manifest.parquet does not exist")
    fails(["pretrain", "--data", str(small_data), "--out", out, "--resume"], "cannot resume")
    yaml = tmp_path / "bad.yaml"
    yaml.write_text("method: simclr\nepoch: 3\n")
    fails(["pretrain", "--data", str(small_data), "--out", out, "--config", str(yaml)], "epoch")
    yaml.write_text("method: simclr\nmethod_options: {temprature: 0.1}\n")
    fails(["pretrain", "--data", str(small_data), "--out", out, "--config", str(yaml)], "temprature")
    yaml.write_text("encoder: small_cnn\nencoder_options: {depth: 3}\n")
    fails(["pretrain", "--data", str(small_data), "--out", out, "--config", str(yaml)], "depth")
    # values of the right name but the wrong type or range: one line, not a traceback in training
    yaml.write_text("method: byol\nmethod_options: {momentum: abc}\n")
    fails(["pretrain", "--data", str(small_data), "--out", out, "--config", str(yaml)],
          "method_options.momentum of method 'byol' must be float, got 'abc'")
    yaml.write_text("method: micle\nmethod_options: {partner: nearst}\n")
    fails(["pretrain", "--data", str(small_data), "--out", out, "--config", str(yaml)], "partner must be one of")
    for method, option in (("simclr", "projection_dim: 0"), ("micle", "hidden_dim: -4"), ("byol", "projection_dim: 0"),
                           ("dino", "bottleneck_dim: 0")):
        yaml.write_text(f"method: {method}\nmethod_options: {{{option}}}\n")
        fails(["pretrain", "--data", str(small_data), "--out", out, "--config", str(yaml)],
              f"method_options {{'{option.split(':')[0]}': {option.split(': ')[1]}}}: head sizes must be whole numbers of at least 1")
    yaml.write_text("encoder: small_cnn\nencoder_options: {width: 0}\n")
    fails(["pretrain", "--data", str(small_data), "--out", out, "--config", str(yaml)], "width >= 1")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "last.ckpt").write_bytes(b"not a checkpoint")
    fails(["pretrain", "--data", str(small_data), "--out", str(tmp_path / "broken"), "--resume"],
          "is not a readable Lightning checkpoint")
    yaml.write_text("encoder: gru\n")  # a series encoder on images: caught before training starts
    fails(["pretrain", "--data", str(small_data), "--out", out, "--config", str(yaml)],
          "encoder 'gru' cannot read imaging cases of shape (1, 28, 28)")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("preset", sorted((REPO / "configs").glob("pneumoniamnist_*.yaml")) + [REPO / "configs/dicom_simclr.yaml"],
                         ids=lambda p: p.stem)
def test_presets_are_valid_configs(preset: Path) -> None:
    cfg = load_config(PretrainConfig, preset)
    assert cfg.method == preset.stem.rsplit("_", 1)[1]  # the file name says which method it configures
    # the method, encoder and augmentation options in the file are all accepted (as the series presets' test does)
    create_method(cfg.method, create_encoder(cfg.encoder, in_channels=1, **cfg.encoder_options), **cfg.method_options)
    get_domain("imaging").make_augment(cfg.augment)


@pytest.mark.slow
def test_loss_falls_on_1000_real_images(full_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = {"method": "simclr", "epochs": 3, "batch_size": 64, "limit_cases": 1024, "accelerator": "cpu",
           "method_options": {"temperature": 0.2}}
    pretrain(full_data, run, cfg)
    by_epoch = _metrics(run).groupby("epoch")["loss"].mean()
    assert len(by_epoch) == 3 and by_epoch.iloc[-1] < by_epoch.iloc[0] - 0.1


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "medssl", "-q", "pretrain", *args]


@pytest.mark.slow
def test_resume_after_a_killed_run(small_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["--data", str(small_data), "--out", str(run), "--batch-size", "16", "--limit-cases", "64",
              "--accelerator", "cpu"]
    proc = subprocess.Popen(_cli(*common, "--epochs", "100"), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (run / "last.ckpt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = torch.load(run / "last.ckpt", weights_only=True)
    done_epochs, step = saved["epoch"] + 1, saved["global_step"]
    assert step == 4 * done_epochs
    resumed = subprocess.run(_cli(*common, "--resume", "--epochs", str(done_epochs + 1)), cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    meta = load_checkpoint(run / "checkpoint.pt").meta
    assert meta["global_step"] == step + 4
    assert _metrics(run)["step"].tolist() == list(range(1, step + 5))


@pytest.mark.slow
def test_ddp_two_cpu_processes_complete_a_step(small_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = subprocess.run(
        _cli("--data", str(small_data), "--out", str(run), "--batch-size", "8", "--limit-cases", "64",
             "--max-steps", "2", "--devices", "2", "--accelerator", "cpu"),
        cwd=REPO, capture_output=True, text=True, timeout=400,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    meta = load_checkpoint(run / "checkpoint.pt").meta
    assert meta["global_step"] == 2 and meta["config"]["devices"] == 2
    assert _metrics(run)["step"].tolist() == [1, 2]


def test_max_minutes_stops_the_run_with_a_checkpoint(small_data: Path, tmp_path: Path) -> None:
    """A wall-clock budget ends a 1000-epoch run early, and the encoder is still written."""
    assert main(["-q", "pretrain", "--data", str(small_data), "--out", str(tmp_path / "run"), "--epochs", "1000",
                 "--batch-size", "16", "--accelerator", "cpu", "--max-minutes", "0.002"]) == 0
    meta = load_checkpoint(tmp_path / "run" / "checkpoint.pt").meta
    assert meta["config"]["max_minutes"] == 0.002
    assert 1 <= meta["global_step"] < 1000 * (240 // 16)
