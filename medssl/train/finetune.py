"""Few-label fine-tuning of a pretrained encoder: linear probe, kNN, or full fine-tuning.

``finetune(checkpoint, data_dir, out_dir, config, labels_csv)`` is what ``medssl finetune`` runs:

1. load the checkpoint (a pretrained ``checkpoint.pt`` or an earlier ``model.pt``), its domain's
   dataset over ``DATA_DIR`` with the checkpoint's preprocessing, and the labels;
2. draw the labelled subset from the labelled train-split cases, whole patients only, of exactly
   the asked size (``label_fraction`` or ``shots`` per class);
3. fit the classifier (``fit_classifier``): a class-balanced logistic regression on frozen
   embeddings turned into an ``nn.Linear`` head (``linear``); stored labelled embeddings (``knn``);
   or the encoder and head trained together with a class-weighted loss, the encoder at a smaller
   learning rate, started from the linear probe (LP-FT) and early-stopped on a patient-level
   validation split (``full``; when a held-out split would keep fewer than ``min_holdout_per_class``
   cases of some class, every labelled case trains for exactly ``epochs`` instead). A two-class
   head early-stopped on held-out labelled patients also gets its decision threshold from them
   (``medssl.train.threshold``: best balanced accuracy, folded into the bias);
4. fit an anomaly scorer on the train-split embeddings, and write ``model.pt``, ``metrics.json``
   and ``config.yaml`` into RUN_DIR.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from medssl.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from medssl.config import StrictConfig, save_config
from medssl.data import get_domain, read_manifest
from medssl.encoders.layout import channels_last_batch, prefers_channels_last
from medssl.errors import ConfigError
from medssl.metrics import classification_metrics, point_metrics
from medssl.atomic import write_json
from medssl.progress import progress
from medssl.train.embed import embed, resolve_device
from medssl.train.label_spreading import spread_labels
from medssl.train.labels import class_names, draw_labelled_subset, load_labels, validation_split
from medssl.train.threshold import balanced_threshold, shift_head_to_threshold
from medssl.train.model_file import FineTunedModel, KnnMemory, build_encoder, centroid_head, model_checkpoint

log = logging.getLogger(__name__)


class FinetuneConfig(StrictConfig):
    """Fine-tuning settings (YAML keys = field names); saved as RUN_DIR/config.yaml."""

    mode: Literal["linear", "knn", "full"] = "linear"
    label_fraction: float | None = None  # of the labelled train cases; None and no shots = all
    shots: int | None = None  # labelled cases per class
    seed: int = 0
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
    unlabelled: Literal["ignore", "spread"] = "ignore"  # spread: linear mode also learns from the train-split
    # cases outside the labelled subset, labelled by label spreading on the frozen embeddings' kNN graph
    spread_k: int = Field(10, ge=1)  # neighbours of the spreading graph
    spread_alpha: float = Field(0.2, gt=0, lt=1)  # how far a labelled case may be pulled from its own label
    spread_class_mass: bool = False  # rescale spread labels to the labelled class shares (class mass normalisation)
    scorer: str | None = "knn"  # anomaly scorer fitted on train-split embeddings; None = none
    scorer_k: int = Field(10, ge=1)
    device: str = "auto"

    @model_validator(mode="after")
    def _one_size(self) -> "FinetuneConfig":
        if self.label_fraction is not None and self.shots is not None:
            raise ValueError("give either label_fraction or shots, not both")
        if self.unlabelled == "spread" and self.mode != "linear":
            raise ValueError(f"unlabelled: spread works with mode linear (a probe on frozen embeddings), not {self.mode}")
        return self


@dataclass
class FinetuneData:
    """Everything loaded once per DATA_DIR + checkpoint; row indices refer to ``manifest`` rows."""

    checkpoint: Checkpoint
    manifest: pd.DataFrame
    dataset: Dataset
    labels: np.ndarray  # (N,) object: label string or None
    patient_ids: np.ndarray  # (N,) str
    split: np.ndarray | None  # (N,) str or None when the manifest has no split column
    label_source: str

    def rows_of(self, split: str) -> np.ndarray:
        """Row indices of one split (all rows when the manifest has no split column)."""
        if self.split is None:
            return np.arange(len(self.manifest))
        return np.flatnonzero(self.split == split)

    def train_pool(self) -> np.ndarray:
        """(N,) bool: the rows labelled subsets are drawn from (train split, or all rows)."""
        if self.split is None or not (self.split == "train").any():
            log.warning("the manifest has no train split: labelled cases are drawn from every row")
            return np.ones(len(self.manifest), dtype=bool)
        return self.split == "train"


def load_data(checkpoint: str | Path, data_dir: str | Path, labels_csv: str | Path | None = None) -> FinetuneData:
    """Read the checkpoint, the manifest, the domain dataset (checkpoint preprocessing) and labels."""
    ckpt = load_checkpoint(checkpoint)
    manifest = read_manifest(data_dir)
    domain_name = ckpt.meta.get("domain")
    if domain_name is None:
        raise ConfigError(f"{checkpoint} names no domain in its meta; re-create it with `medssl pretrain`")
    if "domain" in manifest.columns and not (manifest["domain"].astype(str) == domain_name).all():
        found = sorted(set(manifest["domain"].astype(str)))
        raise ConfigError(f"{checkpoint} was trained on {domain_name!r} data but {data_dir} holds {found}")
    dataset = get_domain(domain_name).make_dataset(Path(data_dir), manifest, ckpt.meta.get("preprocessing"))
    labels = load_labels(manifest, labels_csv).to_numpy(dtype=object)
    split = manifest["split"].astype(str).to_numpy() if "split" in manifest.columns else None
    source = str(labels_csv) if labels_csv is not None else "manifest"
    return FinetuneData(ckpt, manifest, dataset, labels, manifest["patient_id"].astype(str).to_numpy(), split, source)


def _class_ids(labels: np.ndarray, rows: np.ndarray, classes: list[str]) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[labels[i]] for i in rows], dtype=np.int64)


def _known(data: FinetuneData, rows: np.ndarray, classes: list[str]) -> np.ndarray:
    """``rows`` that carry a label among ``classes`` (a class unseen in training cannot be scored)."""
    keep = np.array([data.labels[i] in classes for i in rows], dtype=bool)
    if (~keep).any():
        log.warning("%d validation case(s) without a label of a trained class are left out", int((~keep).sum()))
    return rows[keep]


def linear_probe(emb: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, seed: int) -> nn.Linear:
    """Class-balanced logistic regression on standardised embeddings ``(N, F)`` as an ``nn.Linear``.

    The inverse-frequency regularisation C is chosen by patient-grouped stratified CV when every
    class has at least 3 cases. The standardisation is folded into the layer, so the head reads
    raw embeddings; a binary model gets logits ``(-z/2, z/2)`` so that softmax gives ``sigmoid(z)``.
    """
    scaler = StandardScaler().fit(emb)
    x = scaler.transform(emb)
    min_count = int(np.bincount(y, minlength=n_classes).min())
    n_groups = len(np.unique(groups))
    if min_count >= 3 and n_groups >= 3:
        folds = list(StratifiedGroupKFold(n_splits=min(5, min_count), shuffle=True, random_state=seed).split(x, y, groups))
        clf = LogisticRegressionCV(
            Cs=[0.001, 0.01, 0.1, 1.0, 10.0], cv=folds, class_weight="balanced", max_iter=3000, scoring="neg_log_loss",
            l1_ratios=(0.0,), use_legacy_attributes=False,
        )
    else:
        clf = LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000)
    clf.fit(x, y)
    coef = clf.coef_ / scaler.scale_  # (1 or C, F) on raw embeddings
    bias = clf.intercept_ - coef @ scaler.mean_
    if n_classes == 2:
        coef = np.concatenate([-coef / 2, coef / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    head = nn.Linear(emb.shape[1], n_classes)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return head


class _Labelled(Dataset):
    """``(x, y)`` pairs: item ``j`` is ``(dataset[rows[j]], y[j])``."""

    def __init__(self, dataset: Dataset, rows: np.ndarray, y: np.ndarray) -> None:
        self.dataset, self.rows, self.y = dataset, rows, torch.as_tensor(y)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset[int(self.rows[j])], self.y[j]

    def __getitems__(self, js: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A DataLoader's batched fetch: uses the dataset's own ``__getitems__`` when it has one."""
        fetch = getattr(self.dataset, "__getitems__", None)
        rows = [int(self.rows[j]) for j in js]
        xs = fetch(rows) if callable(fetch) else [self.dataset[r] for r in rows]
        return [(x, self.y[j]) for x, j in zip(xs, js)]


def _val_score(model: nn.Sequential, dataset: Dataset, rows: np.ndarray, y: np.ndarray, loss_fn: nn.Module, device: torch.device) -> tuple[float, float]:
    """(validation AUROC or -inf when undefined, class-weighted validation loss)."""
    emb = embed(model[0], dataset, rows, device=device, desc="validating")
    with torch.no_grad():
        logits = model[1](emb.to(device)).cpu()
    loss = float(loss_fn(logits, torch.as_tensor(y)).item())
    auc = point_metrics(y, torch.softmax(logits.double(), 1).numpy())["auroc"]
    return (auc if auc is not None else -math.inf), loss


def train_full(
    encoder: nn.Module,
    head: nn.Linear,
    dataset: Dataset,
    train_rows: np.ndarray,
    y_train: np.ndarray,
    val_rows: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    config: FinetuneConfig,
    lr_encoder: float,
    device: torch.device,
) -> tuple[nn.Module, nn.Linear, dict[str, Any]]:
    """Train encoder + head with class-weighted cross-entropy; early stopping on the validation rows.

    Picks the epoch with the best validation AUROC (ties: lower loss). Without usable validation
    rows (fewer than one case per class) it trains for the full budget. Returns the trained pair
    and a small training log.
    """
    torch.manual_seed(config.seed)
    weights = compute_class_weight("balanced", classes=np.arange(n_classes), y=y_train) if len(np.unique(y_train)) == n_classes else np.ones(n_classes)
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32))
    model = nn.Sequential(encoder, head).to(device)
    channels_last = prefers_channels_last(encoder, device)  # as pretraining does (medssl.encoders.layout)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optim = torch.optim.AdamW(
        [{"params": encoder.parameters(), "lr": lr_encoder}, {"params": head.parameters(), "lr": config.lr_head}],
        weight_decay=config.weight_decay,
    )
    bs = min(config.batch_size, len(train_rows))
    gen = torch.Generator().manual_seed(config.seed)
    pairs = _Labelled(dataset, train_rows, y_train)
    if len(train_rows) // bs < config.min_steps_per_epoch:  # tiny subset: an epoch = a fixed number of draws
        sampler = RandomSampler(pairs, replacement=True, num_samples=config.min_steps_per_epoch * bs, generator=gen)
        loader = DataLoader(pairs, batch_size=bs, sampler=sampler, drop_last=True)
    else:
        loader = DataLoader(pairs, batch_size=bs, shuffle=True, drop_last=True, generator=gen)
    steps_per_epoch = len(loader)
    epochs = config.epochs
    can_validate = len(val_rows) > 0 and len(np.unique(y_val)) == n_classes
    if not can_validate and len(val_rows):
        log.warning("no validation cases of every class: training %d epochs without early stopping", epochs)
    best: tuple[float, float] = (-math.inf, math.inf)
    best_state = copy.deepcopy(model.state_dict())
    best_epoch, stale, history = 0, 0, []
    for epoch in progress(range(1, epochs + 1), total=epochs, desc=f"fine-tuning ({steps_per_epoch} steps/epoch)", unit="epoch"):
        model.train()
        total = 0.0
        for x, y in loader:
            x = x.to(device)
            loss = loss_fn(model(channels_last_batch(x) if channels_last else x), y.to(device))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += float(loss.item())
        entry = {"epoch": epoch, "train_loss": total / steps_per_epoch}
        if can_validate:
            auc, vloss = _val_score(model, dataset, val_rows, y_val, loss_fn.cpu(), device)
            loss_fn.to(device)
            entry.update(val_auroc=auc, val_loss=vloss)
            if auc > best[0] or (auc == best[0] and vloss < best[1]):
                best, best_epoch, stale = (auc, vloss), epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.append(entry)
        if can_validate and stale >= config.patience:
            log.info("early stop at epoch %d (best epoch %d, val AUROC %.4f)", epoch, best_epoch, best[0])
            break
    if can_validate:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    model.cpu().eval()
    return model[0], model[1], {"epochs_run": len(history), "best_epoch": best_epoch, "history": history}


def _spread_probe(
    data: FinetuneData,
    train_rows: np.ndarray,
    y_train: np.ndarray,
    n_classes: int,
    val_rows: np.ndarray,
    emb_train: torch.Tensor,
    encoder: nn.Module,
    frozen_embeddings: torch.Tensor | None,
    config: FinetuneConfig,
) -> tuple[nn.Linear, dict[str, Any]]:
    """Linear probe on the labelled rows plus every other train-pool row, labelled by spreading.

    The unlabelled rows are the train pool (train split, or every row without one) minus the
    labelled and validation rows: evaluation cases never enter the graph.
    """
    unl = np.setdiff1d(np.flatnonzero(data.train_pool()), np.concatenate([train_rows, val_rows]))
    if len(unl) == 0:
        log.warning("unlabelled: spread found no unlabelled train cases; fitting the probe on the labelled cases only")
        return linear_probe(emb_train.numpy(), y_train, data.patient_ids[train_rows], n_classes, config.seed), {"n_unlabelled": 0}
    emb_unl = (
        frozen_embeddings[torch.as_tensor(unl, dtype=torch.long)]
        if frozen_embeddings is not None
        else embed(encoder, data.dataset, unl, device=next(encoder.parameters()).device, desc="embedding unlabelled cases")
    )
    proba = spread_labels(emb_train.numpy(), y_train, emb_unl.numpy(), n_classes, config.spread_k, config.spread_alpha,
                          config.spread_class_mass)
    pseudo = proba.argmax(axis=1)
    counts = np.bincount(pseudo, minlength=n_classes).tolist()
    log.info("label spreading: %d labelled -> %d unlabelled train cases (spread class counts %s)",
             len(train_rows), len(unl), counts)
    x = np.concatenate([emb_train.numpy(), emb_unl.numpy()])
    y = np.concatenate([y_train, pseudo])
    groups = np.concatenate([data.patient_ids[train_rows], data.patient_ids[unl]])
    head = linear_probe(x, y, groups, n_classes, config.seed)
    return head, {"n_unlabelled": int(len(unl)), "spread_class_counts": counts}


@dataclass
class FitResult:
    """A fitted classifier: encoder + head (+ kNN memory), classes, validation metrics, training log."""

    encoder: nn.Module
    head: nn.Linear
    classes: list[str]
    knn: KnnMemory | None
    metrics: dict[str, Any] | None
    train_log: dict[str, Any]


def fit_classifier(
    data: FinetuneData,
    subset: np.ndarray,
    val_rows: np.ndarray | None,
    config: FinetuneConfig,
    frozen_embeddings: torch.Tensor | None = None,
) -> FitResult:
    """Fit the classifier of ``config.mode`` on the labelled rows ``subset``.

    ``val_rows``: rows for validation metrics and early stopping; ``None`` uses the manifest's
    labelled val split, or (full mode, no such split) holds out ``val_fraction`` of the subset's
    patients. ``frozen_embeddings`` ``(N, F)`` over every manifest row may be passed to skip
    re-embedding (linear/knn with the checkpoint's own encoder only).
    """
    device = resolve_device(config.device)
    classes = class_names(pd.Series(data.labels[subset]))
    meta = data.checkpoint.meta
    state = data.checkpoint.states.get("encoder") if config.init == "pretrained" else None
    if config.init == "random" and config.mode != "full":
        raise ConfigError(f"a randomly initialised encoder can only be trained in full mode, not {config.mode!r}")
    torch.manual_seed(config.seed)
    encoder = build_encoder(meta, state).to(device)
    if val_rows is None and data.split is not None:
        val_rows = np.flatnonzero((data.split == "val") & pd.notna(data.labels))
    train_rows = subset
    validation = "val" if val_rows is not None and len(val_rows) else "none"
    if (val_rows is None or len(val_rows) == 0) and config.mode == "full":
        held_train, held_val = validation_split(subset, data.patient_ids, data.labels, config.val_fraction, config.seed)
        per_class = pd.Series(data.labels[held_val]).value_counts().reindex(classes, fill_value=0)
        if int(per_class.min()) >= config.min_holdout_per_class:
            validation = "held-out labelled patients"
            train_rows, val_rows = held_train, held_val
            log.info("early stopping on %d held-out labelled cases (%d left to train on)", len(val_rows), len(train_rows))
        else:
            validation = "none (too few labelled cases to hold out)"
            val_rows = np.zeros(0, dtype=np.int64)
            log.info(
                "a held-out split would keep %d case(s) of its rarest class (< min_holdout_per_class=%d): "
                "training on all %d labelled cases for %d epochs, no early stopping",
                int(per_class.min()), config.min_holdout_per_class, len(subset), config.epochs,
            )
    val_rows = _known(data, np.asarray(val_rows if val_rows is not None else [], dtype=np.int64), classes)
    y_train = _class_ids(data.labels, train_rows, classes)
    y_val = _class_ids(data.labels, val_rows, classes)

    knn, train_log = None, {}
    n_classes = len(classes)
    if config.mode in ("linear", "knn") or config.init == "pretrained":
        emb_train = (
            frozen_embeddings[torch.as_tensor(train_rows, dtype=torch.long)]
            if frozen_embeddings is not None and config.init == "pretrained"
            else embed(encoder, data.dataset, train_rows, device=device, desc="embedding labelled cases")
        )
    if config.mode == "knn":
        knn = KnnMemory(emb_train, torch.as_tensor(y_train), config.knn_k)
        head = centroid_head(emb_train, torch.as_tensor(y_train), n_classes)
    elif config.mode == "linear" and config.unlabelled == "spread":
        head, train_log = _spread_probe(data, train_rows, y_train, n_classes, val_rows, emb_train, encoder, frozen_embeddings, config)
    elif config.mode == "linear" or config.init == "pretrained":
        head = linear_probe(emb_train.numpy(), y_train, data.patient_ids[train_rows], n_classes, config.seed)
    else:
        head = nn.Linear(encoder.num_features, n_classes)
    if config.mode == "full":
        lr_enc = config.lr_encoder if config.init == "pretrained" else config.lr_head
        encoder, head, train_log = train_full(
            encoder, head, data.dataset, train_rows, y_train, val_rows, y_val, n_classes, config, lr_enc, device
        )
    encoder = encoder.cpu().eval()
    metrics = None
    if len(val_rows):
        emb_val = (
            frozen_embeddings[torch.as_tensor(val_rows, dtype=torch.long)]
            if frozen_embeddings is not None and config.mode != "full" and config.init == "pretrained"
            else embed(encoder, data.dataset, val_rows, desc="embedding validation cases")
        )
        proba = FineTunedModel(encoder, head, classes, {}, knn).proba_from_embeddings(emb_val)
        metrics = {"n": int(len(val_rows)), **classification_metrics(y_val, proba, classes)}
        if validation == "held-out labelled patients" and n_classes == 2 and knn is None and head.bias is not None:
            _set_decision_threshold(head, y_val, np.asarray(proba)[:, 1], metrics, train_log)
    train_log.update(n_train=int(len(train_rows)), n_val=int(len(val_rows)), validation=validation)
    return FitResult(encoder, head, classes, knn, metrics, train_log)


def _set_decision_threshold(
    head: nn.Linear, y_val: np.ndarray, p1: np.ndarray, metrics: dict[str, Any], train_log: dict[str, Any]
) -> None:
    """Fold the held-out patients' balanced-accuracy cut-off into ``head`` (``medssl.train.threshold``).

    ``metrics`` stay those of the unshifted head (the cut-off is fitted on these very cases, so its
    own balanced accuracy there is optimistic); ``train_log["decision_threshold"]`` records both."""
    t = balanced_threshold(y_val, p1)
    if t is None:
        return
    shift_head_to_threshold(head, t)
    after = float(balanced_accuracy_score(y_val, (p1 >= t).astype(int)))
    train_log["decision_threshold"] = {
        "p_class1": t, "n_heldout": int(len(y_val)),
        "balanced_accuracy_before": metrics["balanced_accuracy"], "balanced_accuracy_after_on_heldout": after,
    }
    log.info("decision threshold P(class 1) >= %.4g chosen on %d held-out labelled cases "
             "(their balanced accuracy %.3f -> %.3f)", t, len(y_val), metrics["balanced_accuracy"], after)


def fit_scorer(name: str, k: int, embeddings: torch.Tensor) -> tuple[Any, dict[str, Any]] | None:
    """An anomaly scorer fitted on train-split embeddings ``(N, F)``, and its ``{"name", "kwargs"}``."""
    from medssl.anomaly import create_scorer

    kwargs: dict[str, Any] = {"normalize": "l2"}
    if name == "knn":
        kwargs["k"] = max(1, min(k, len(embeddings) - 1))
    if len(embeddings) < 3:
        log.warning("only %d train case(s): no anomaly scorer is stored", len(embeddings))
        return None
    return create_scorer(name, **kwargs).fit(embeddings), {"name": name, "kwargs": kwargs}


def finetune(
    checkpoint: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    labels_csv: str | Path | None = None,
) -> Path:
    """Fine-tune ``checkpoint`` on the labels of ``data_dir``; writes RUN_DIR files, returns model.pt.

    RUN_DIR/model.pt (kind "model", see ``medssl.train.model_file``), RUN_DIR/metrics.json
    (validation metrics + training log) and RUN_DIR/config.yaml (the resolved config).
    """
    config = config or FinetuneConfig()
    resolve_device(config.device)  # an unknown device or scorer name fails now, not after the training
    if config.scorer:
        from medssl.anomaly import SCORERS

        SCORERS.get(config.scorer)
    out = Path(out_dir)
    data = load_data(checkpoint, data_dir, labels_csv)
    subset = draw_labelled_subset(
        data.patient_ids, data.labels, pool=data.train_pool(),
        fraction=config.label_fraction, shots=config.shots, seed=config.seed,
    )
    log.info("labelled subset: %d cases of %d patients", len(subset), len(np.unique(data.patient_ids[subset])))
    result = fit_classifier(data, subset, None, config)
    train_rows = np.flatnonzero(data.train_pool())
    scorer = None
    if config.scorer:
        emb = embed(result.encoder, data.dataset, train_rows, desc="embedding train split for the anomaly scorer")
        scorer = fit_scorer(config.scorer, config.scorer_k, emb)
    src = data.checkpoint.meta
    meta = {
        "encoder": src["encoder"],
        "domain": src["domain"],
        "preprocessing": src.get("preprocessing"),
        "method": src.get("method"),
        "pretrain_config": src.get("pretrain_config", src.get("config") if data.checkpoint.kind == "encoder" else None),
        "source_checkpoint": {"path": str(checkpoint), "kind": data.checkpoint.kind},
        "classes": result.classes,
        "mode": config.mode,
        "seed": config.seed,
        "label_source": data.label_source,
        "n_labelled": int(len(subset)),
        "metrics": result.metrics,
        "validation": result.train_log["validation"],  # rows behind "metrics" (and early stopping in full mode)
        "config": config.model_dump(mode="json"),
    }
    ckpt = model_checkpoint(
        result.encoder, result.head, meta, result.knn,
        scorer[0] if scorer else None, scorer[1] if scorer else None,
    )
    out.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(out / "model.pt", ckpt)
    write_json(
        {"validation": result.metrics, "n_labelled": int(len(subset)), "classes": result.classes,
         "mode": config.mode, "training": result.train_log},
        out / "metrics.json",
    )
    save_config(config, out / "config.yaml")
    if result.metrics:
        log.info("validation AUROC %s on %d cases", result.metrics["auroc"], result.metrics["n"])
    return path
