"""Experiment tracking of a training run: ``make_logger(kind, run_dir)`` and ``plot_curves(run_dir) -> Path``.

Every Lightning run (``medssl pretrain``, ``medssl finetune --mode full``) keeps a CSV log,
``RUN_DIR/logs/csv/metrics.csv`` (Lightning's ``CSVLogger`` format: one row per logging call,
columns ``step``, ``epoch`` and the logged metric names, blank where a row does not carry a
metric); ``plot_curves`` draws ``RUN_DIR/training_curves.png`` from it at the end of the run.
``kind`` adds a tracker beside it:

- ``"csv"`` (default): the CSV log only;
- ``"tensorboard"``: TensorBoard event files in ``RUN_DIR/logs/tensorboard``
  (``tensorboard --logdir RUN_DIR/logs``);
- ``"mlflow"``: an MLflow run (experiment ``medssl``) in a local SQLite store
  ``RUN_DIR/mlflow.db``, artifacts in ``RUN_DIR/mlartifacts``; never a server
  (``mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlflow.db``). MLflow 3 refuses its old
  ``./mlruns`` file store, so the store is a SQLite file. The run id is kept in
  ``RUN_DIR/logs/mlflow_run_id``.

A resumed run (``resume_step``: the global step of the checkpoint it continues from) appends to
the same logs: CSV rows from ``resume_step`` on (the steps the run redoes) are dropped, TensorBoard
purges its events from that step, MLflow continues the same run id.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from medssl.errors import ConfigError

TrackerKind = Literal["csv", "tensorboard", "mlflow"]
LOGS_DIR = "logs"
CSV_LOG = Path(LOGS_DIR) / "csv" / "metrics.csv"
CURVES_PNG = "training_curves.png"
MLFLOW_DB = "mlflow.db"
MLFLOW_RUN_ID = Path(LOGS_DIR) / "mlflow_run_id"


class _ResumableWriter(ExperimentWriter):
    """Lightning's CSV writer that keeps an earlier run's rows below ``keep_before`` (a resume)
    instead of deleting the file; without ``keep_before`` an old file is replaced, as Lightning does."""

    def __init__(self, log_dir: str, keep_before: int | None) -> None:
        self._keep_before = keep_before
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if self._keep_before is None:
            path.unlink()
            return
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            rows = [r for r in reader if r.get("step") and int(float(r["step"])) < self._keep_before]
            keys = list(reader.fieldnames or [])
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(keys)


class _ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``RUN_DIR/logs/csv/metrics.csv`` that appends on a resume."""

    def __init__(self, run_dir: Path, keep_before: int | None) -> None:
        super().__init__(str(run_dir), name=LOGS_DIR, version="csv")
        self._keep_before = keep_before

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumableWriter(self.log_dir, self._keep_before)
        return self._experiment


def _missing(kind: str, package: str) -> ConfigError:
    return ConfigError(f"logger {kind!r} needs the {package} package; install it with "
                       f"`pip install 'medssl[tracking]'`, or use --logger csv")


def make_logger(kind: str, run_dir: str | Path, resume_step: int | None = None) -> list[Logger]:
    """The Lightning loggers of a run in ``run_dir``: the CSV log, plus TensorBoard or MLflow by ``kind``.

    ``resume_step``: the global step a resumed run continues from (``None``: a new run).
    Raises ``ConfigError`` for an unknown kind or a tracker that is not installed.
    """
    run_dir = Path(run_dir)
    loggers: list[Logger] = [_ResumableCSVLogger(run_dir, resume_step)]
    if kind == "csv":
        return loggers
    if kind == "tensorboard":
        try:
            import tensorboard  # noqa: F401  (Lightning falls back to tensorboardX otherwise)
            from lightning.pytorch.loggers import TensorBoardLogger
        except ImportError:
            raise _missing(kind, "tensorboard") from None
        purge = {"purge_step": resume_step} if resume_step is not None else {}
        loggers.append(TensorBoardLogger(str(run_dir), name=LOGS_DIR, version="tensorboard",
                                         default_hp_metric=False, **purge))
        return loggers
    if kind == "mlflow":
        try:
            import mlflow  # noqa: F401
            from lightning.pytorch.loggers import MLFlowLogger
        except ImportError:
            raise _missing(kind, "mlflow") from None
        id_file = run_dir / MLFLOW_RUN_ID
        run_id = id_file.read_text().strip() if resume_step is not None and id_file.is_file() else None
        logger = MLFlowLogger(
            experiment_name="medssl",
            run_name=run_dir.resolve().name,
            tracking_uri=f"sqlite:///{(run_dir / MLFLOW_DB).resolve()}",
            artifact_location=(run_dir / "mlartifacts").resolve().as_uri(),
            run_id=run_id,
        )
        if logger.run_id:  # creates the store and the run now (global rank 0; other ranks have none)
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(logger.run_id + "\n")
        loggers.append(logger)
        return loggers
    raise ConfigError(f"unknown logger {kind!r}; use csv, tensorboard or mlflow")


def plot_curves(run_dir: str | Path, title: str | None = None) -> Path:
    """Draw every metric of ``RUN_DIR/logs/csv/metrics.csv`` into ``RUN_DIR/training_curves.png``.

    One panel per metric: against the optimizer step, or against the epoch for metrics logged
    once an epoch (validation metrics, ``*_epoch``). A run that logged nothing gets a panel saying
    so. The PNG is written to a staging name and renamed. Returns its path.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg canvas

    run_dir = Path(run_dir)
    path = run_dir / CSV_LOG
    table = pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()
    names = [c for c in table.columns if c not in ("step", "epoch")]
    series = []
    for name in names:
        rows = table[pd.to_numeric(table[name], errors="coerce").notna()]
        if rows.empty:
            continue
        per_epoch = "epoch" in rows and rows["epoch"].notna().all() and (name.startswith("val") or name.endswith("_epoch"))
        x = rows["epoch"].to_numpy(float) + 1 if per_epoch else rows["step"].to_numpy(float)
        series.append((name, x, rows[name].to_numpy(float), "epoch" if per_epoch else "step"))
    n = max(1, len(series))
    fig = Figure(figsize=(5.0 * min(n, 3), 3.2 * int(np.ceil(n / 3))), dpi=100)
    axes = fig.subplots(int(np.ceil(n / 3)), min(n, 3), squeeze=False).ravel()
    for ax, (name, x, y, unit) in zip(axes, series):
        ax.plot(x, y, marker="." if len(x) < 50 else None)
        ax.set_xlabel(unit)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    if not series:
        axes[0].text(0.5, 0.5, "no metrics logged", ha="center", va="center")
        axes[0].set_axis_off()
    for ax in axes[len(series) or 1:]:
        ax.set_axis_off()
    fig.suptitle(title or run_dir.resolve().name)
    fig.tight_layout()
    out = run_dir / CURVES_PNG
    staging = run_dir / f".{CURVES_PNG}.tmp"
    run_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(staging, format="png")
    os.replace(staging, out)
    return out
