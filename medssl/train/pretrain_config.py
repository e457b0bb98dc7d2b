"""The typed configuration of ``medssl pretrain`` (YAML presets in ``configs/`` only override it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medssl.config import Seed, StrictConfig


class PretrainConfig(StrictConfig):
    """Everything a pretraining run uses; saved as ``RUN_DIR/config.yaml``.

    Domain-specific parts are open dicts handed to the domain / method / encoder, which validate
    them: ``method_options`` (constructor kwargs of the method, e.g. ``temperature``),
    ``encoder_options`` (override the encoder kwargs the domain derives from the data),
    ``augment`` (options of the domain's ``make_augment``) and ``preprocessing`` (``None`` fits
    it on the train split; a dict re-applies a saved one).
    """

    method: str = "simclr"
    method_options: dict[str, Any] = Field(default_factory=dict)
    encoder: str | None = None  # None: the domain's default encoder
    encoder_options: dict[str, Any] = Field(default_factory=dict)
    augment: dict[str, Any] = Field(default_factory=dict)
    preprocessing: dict[str, Any] | None = None
    anomaly_recipe: str = "auto"  # how `medssl score` turns this encoder into anomaly scores (medssl.domains); auto: the domain's
    few_label_recipe: str = "auto"  # what `medssl finetune --mode auto` fits on few labels; auto: the domain's

    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps (overrides epochs)
    max_minutes: float | None = Field(None, gt=0)  # wall-clock training budget; with epochs / max_steps, whichever ends first
    batch_size: int = Field(128, ge=2)  # per device; contrastive losses need >= 2
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)  # linear warm-up, then cosine decay to 0 (per step)

    seed: Seed = 0
    limit_cases: int | None = Field(None, ge=2)  # train on a seeded random subset of the train rows
    num_workers: int = Field(0, ge=0)
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "32-true"
    logger: Literal["csv", "tensorboard", "mlflow"] = "csv"  # tracker beside RUN_DIR/logs/csv (medssl.train.tracking)
