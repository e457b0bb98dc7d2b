"""Experiment tracking: the CSV log, TensorBoard, MLflow and the training-curve PNG of real runs.

Tiny real runs through the CLI on a 96-image cut of PneumoniaMNIST (as tests/test_pretrain.py):
pretraining for a few steps, a resumed run, and a full-mode fine-tune.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medssl.cli import main
from medssl.train.tracking import CSV_LOG, CURVES_PNG, MLFLOW_DB, MLFLOW_RUN_ID

NPZ = "imaging/pneumoniamnist_trainval.npz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 train (32 normal, 32 pneumonia) + 40 val real images, ingested."""
    tmp = tmp_path_factory.mktemp("tracking")
    with np.load(shared_data / NPZ) as z:
        ty, vy = z["train_labels"].ravel(), z["val_labels"].ravel()
        tr = np.concatenate([np.flatnonzero(ty == 0)[:32], np.flatnonzero(ty == 1)[:32]])
        va = np.concatenate([np.flatnonzero(vy == 0)[:20], np.flatnonzero(vy == 1)[:20]])
        np.savez(tmp / "cut.npz", train_images=z["train_images"][tr], train_labels=z["train_labels"][tr],
                 val_images=z["val_images"][va], val_labels=z["val_labels"][va])
    assert main(["-q", "ingest", "images", "--format", "npz", str(tmp / "cut.npz"), "--out", str(tmp / "data")]) == 0
    return tmp / "data"


def _pretrain(data: Path, run: Path, *extra: str) -> None:
    (run.parent / "small.yaml").write_text("encoder_options: {width: 8}\n")
    args = ["-q", "pretrain", "--data", str(data), "--out", str(run), "--batch-size", "16", "--accelerator", "cpu"]
    if "--resume" not in extra:
        args += ["--config", str(run.parent / "small.yaml")]
    assert main([*args, *extra]) == 0


def _losses(run: Path, column: str = "loss") -> pd.DataFrame:
    log = pd.read_csv(run / CSV_LOG)
    return log[log[column].notna()]


def _assert_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0  # something is drawn


def test_pretrain_logs_every_step_to_csv_and_draws_the_curve(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _pretrain(data, run, "--max-steps", "3")
    rows = _losses(run)
    assert len(rows) == 3 and rows["step"].tolist() == [0, 1, 2]
    assert all(math.isfinite(v) for v in rows["loss"])
    own = pd.read_csv(run / "metrics.csv")  # the run's own per-step record: the same losses
    np.testing.assert_allclose(rows["loss"].to_numpy(), own["loss"].to_numpy(), rtol=1e-6)
    _assert_png(run / CURVES_PNG)
    assert "logger: csv" in (run / "config.yaml").read_text()  # the resolved config names it


def test_resume_appends_to_the_same_logs(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _pretrain(data, run, "--epochs", "1", "--limit-cases", "64", "--logger", "tensorboard")  # 4 steps
    first = _losses(run)["loss"].tolist()
    assert len(first) == 4
    _pretrain(data, run, "--resume", "--epochs", "2")
    rows = _losses(run)
    assert rows["step"].tolist() == list(range(8))  # the first epoch's rows kept, no step twice
    assert rows["loss"].tolist()[:4] == first
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "logs" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == list(range(8))  # config.yaml kept the logger


def test_tensorboard_event_files_hold_the_loss(data: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    _pretrain(data, run, "--max-steps", "3", "--logger", "tensorboard")
    events = EventAccumulator(str(run / "logs" / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("loss")
    assert [e.step for e in scalars] == [0, 1, 2]
    np.testing.assert_allclose([e.value for e in scalars], _losses(run)["loss"].to_numpy(), rtol=1e-6)
    _assert_png(run / CURVES_PNG)


def test_mlflow_local_store_holds_the_loss(data: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    _pretrain(data, run, "--max-steps", "3", "--logger", "mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{run / MLFLOW_DB}")
    run_id = (run / MLFLOW_RUN_ID).read_text().strip()
    history = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1, 2]
    np.testing.assert_allclose([m.value for m in history], _losses(run)["loss"].to_numpy(), rtol=1e-6)
    assert client.get_run(run_id).info.status == "FINISHED"
    _pretrain(data, run, "--resume", "--max-steps", "5")  # continues the same MLflow run
    assert (run / MLFLOW_RUN_ID).read_text().strip() == run_id
    history = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    assert not (Path.cwd() / "mlruns").exists()  # nothing written outside the run folder


def test_full_finetune_logs_train_and_validation_curves(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "pre"
    _pretrain(data, run, "--max-steps", "2")
    (tmp_path / "ft.yaml").write_text("min_steps_per_epoch: 2\nbatch_size: 16\nscorer: null\n")
    out = tmp_path / "ft"
    assert main(["-q", "finetune", "--checkpoint", str(run / "checkpoint.pt"), "--data", str(data), "--out", str(out),
                 "--mode", "full", "--epochs", "2", "--config", str(tmp_path / "ft.yaml")]) == 0
    steps = _losses(out, "train_loss_step")
    epochs = _losses(out, "val_auroc")
    assert len(steps) == 2 * (64 // 16) and all(math.isfinite(v) for v in steps["train_loss_step"])  # 2 epochs of 4
    assert epochs["epoch"].tolist() == [0, 1] and _losses(out, "train_loss_epoch")["epoch"].tolist() == [0, 1]
    _assert_png(out / CURVES_PNG)


def test_an_unknown_logger_is_one_clear_line(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "bad.yaml").write_text("logger: wandb\n")
    assert main(["-q", "pretrain", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--config", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "logger" in err[0] and "csv" in err[0]
