"""The typed settings of ``medssl finetune`` (YAML keys = field names; saved as RUN_DIR/config.yaml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from medssl.config import Seed, StrictConfig


class FinetuneConfig(StrictConfig):
    """Fine-tuning settings (YAML keys = field names); saved as RUN_DIR/config.yaml."""

    mode: Literal["auto", "linear", "knn", "full", "recipe"] = "auto"  # auto: the domain's few-label recipe
    recipe: str = "auto"  # few-label recipe (medssl.domains) for mode auto/recipe; auto: the checkpoint's or domain's default
    label_fraction: float | None = Field(None, gt=0, le=1)  # of the labelled train cases; None and no shots = all
    shots: int | None = Field(None, ge=1)  # labelled cases per class
    label_unit: Literal["auto", "patient", "case"] = "auto"  # how the labelled subset is drawn: whole patients, or
    # cases spread over the patients; auto = the domain's unit (medssl.domains.default_label_unit: signals case, else patient)
    seed: Seed = 0
    init: Literal["pretrained", "random"] = "pretrained"  # random = supervised-from-scratch baseline
    epochs: int = Field(30, ge=1)  # full mode: maximum epochs
    min_steps_per_epoch: int = Field(10, ge=1)  # small subsets are resampled (with replacement) to this many batches
    patience: int = Field(5, ge=1)  # epochs without validation improvement before stopping
    batch_size: int = Field(64, ge=1)
    lr_head: float = Field(1e-3, gt=0)
    lr_encoder: float = Field(1e-4, gt=0)  # pretrained init; a random init trains the encoder at lr_head
    weight_decay: float = Field(1e-4, ge=0)
    val_fraction: float = Field(0.2, gt=0, lt=1)  # of labelled patients, held out when the manifest has no val labels
    min_holdout_per_class: int = Field(5, ge=1)  # a held-out split with fewer cases of a class is too noisy to stop on:
    # then every labelled case trains for exactly ``epochs`` (applies to pretrained and random init alike)
    knn_k: int = Field(20, ge=1)
    labelled_views: bool = False  # full mode: train on the domain's augmented views of the labelled cases
    # (the checkpoint's pretraining augment options, or unlabelled_augment), not on the cases as stored
    unlabelled: Literal["ignore", "spread", "fixmatch", "distill"] = "ignore"  # what the train-split cases outside
    # the labelled subset (their labels unused) add: spread (linear mode): labels spread on the frozen embeddings'
    # kNN graph; fixmatch (full mode): confident predictions on each case become targets for its augmented view;
    # distill (linear or full teacher): a student (encoder + head) learns the teacher's soft predictions on
    # augmented views of every train case (SimCLRv2). medssl.train.semi_supervised
    spread_k: int = Field(10, ge=1)  # neighbours of the spreading graph
    spread_alpha: float = Field(0.2, gt=0, lt=1)  # how far a labelled case may be pulled from its own label
    spread_class_mass: bool = False  # rescale spread labels to the labelled class shares (class mass normalisation)
    fixmatch_threshold: float = Field(0.95, gt=0, lt=1)  # pseudo-label kept when the un-augmented case's top
    # class probability reaches this
    fixmatch_weight: float = Field(1.0, ge=0)  # weight of the unlabelled consistency loss
    unlabelled_batch_size: int = Field(128, ge=1)  # unlabelled cases per step (fixmatch); distill uses batch_size
    distill_temperature: float = Field(1.0, gt=0)  # softens the teacher's logits into the student's targets
    unlabelled_augment: dict[str, Any] | None = None  # options of the domain's make_augment for the augmented
    # views (fixmatch, distill); None = the checkpoint's pretraining augment options
    scorer: str | None = "auto"  # anomaly scorer fitted on the train split: auto = the domain's anomaly recipe;
    # a scorer name (medssl.anomaly) = that scorer on the recipe's features; None = none
    scorer_k: int = Field(10, ge=1)
    device: str = "auto"
    logger: Literal["csv", "tensorboard", "mlflow"] = "csv"  # full mode: tracker beside RUN_DIR/logs/csv (medssl.train.tracking)

    @model_validator(mode="after")
    def _one_size(self) -> "FinetuneConfig":
        if self.label_fraction is not None and self.shots is not None:
            raise ValueError("give either label_fraction or shots, not both")
        if self.unlabelled == "spread" and self.mode not in ("linear", "auto"):
            raise ValueError(f"unlabelled: spread works with mode linear (a probe on frozen embeddings), not {self.mode}")
        if self.unlabelled == "fixmatch" and self.mode not in ("full", "auto"):
            raise ValueError(f"unlabelled: fixmatch trains the encoder: use mode full (or auto), not {self.mode}")
        if self.unlabelled == "distill" and self.mode not in ("linear", "full", "auto"):
            raise ValueError(f"unlabelled: distill needs a linear or full teacher (mode linear, full or auto), not {self.mode}")
        if self.labelled_views and (self.mode not in ("full", "auto") or self.unlabelled != "ignore"):
            raise ValueError(f"labelled_views trains the encoder on augmented labelled cases: use mode full (or auto) "
                             f"without --unlabelled, not mode {self.mode} with unlabelled {self.unlabelled}")
        if self.unlabelled == "distill" and self.init == "random" and self.mode == "linear":
            raise ValueError("unlabelled: distill with init random needs mode full (a random encoder has no linear probe)")
        return self


def trains_encoder(config: FinetuneConfig) -> bool:
    """Whether the fitted encoder differs from the checkpoint's (its frozen embeddings no longer apply)."""
    return config.mode == "full" or config.unlabelled in ("fixmatch", "distill")


def resolve_mode(config: FinetuneConfig, recipe_on_embeddings: bool) -> str:
    """The mode ``auto`` stands for: the few-label recipe when the domain's recipe is not a classic
    embedding mode, else ``linear`` (``full`` for a randomly initialised encoder or fixmatch;
    ``linear``, the teacher, for spread and distill)."""
    if config.mode != "auto":
        return config.mode
    if config.init == "random" or config.unlabelled == "fixmatch":
        return "full"
    if config.unlabelled in ("spread", "distill") or recipe_on_embeddings:
        return "linear"
    return "recipe"
