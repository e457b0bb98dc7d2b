"""Few-label fine-tuning of a pretrained encoder: ``finetune(checkpoint, data_dir, out_dir, config, labels_csv)``.

What ``medssl finetune`` runs:

1. load the checkpoint (a pretrained ``checkpoint.pt`` or an earlier ``model.pt``), its domain's
   dataset over ``DATA_DIR`` with the checkpoint's preprocessing, and the labels
   (``medssl.train.finetune_data``);
2. draw the labelled subset from the labelled train-split cases, of exactly the asked size
   (``label_fraction`` or ``shots`` per class): whole patients, or cases spread over the patients
   (``label_unit``; auto = the domain's, ``medssl.domains.default_label_unit``);
3. fit the domain's anomaly recipe (``medssl.domains``) on the train split: its scorer reads the
   recipe's features (for most domains the embeddings; for transactions raw columns + embedding);
4. fit the classifier: mode ``auto`` (default) uses the domain's few-label recipe, which is either
   a recipe of its own (``recipe``: e.g. transactions, a cross-validated logistic regression on
   raw columns + anomaly percentile, ``medssl.train.recipe_fit``) or the classic modes on the
   embeddings (``medssl.train.classifier``): ``linear`` probe, ``knn`` vote, ``full`` fine-tuning;
5. measure the plain supervised baseline on the same labels and validation rows
   (``medssl.train.baseline``: logistic regression on the standardised raw inputs);
6. write ``model.pt`` (``medssl.models.model_file``), ``metrics.json`` (with ``baseline``) and
   ``config.yaml`` into RUN_DIR.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medssl.atomic import write_json
from medssl.checkpoints import save_checkpoint
from medssl.config import save_config
from medssl.outputs import refuse_inputs, refuse_run_replacement
from medssl.domains import FewLabelRecipe, anomaly_recipe, default_label_unit, few_label_recipe
from medssl.errors import ConfigError
from medssl.models import build_encoder, model_checkpoint, resolve_device
from medssl.train.baseline import supervised_baseline
from medssl.train.classifier import FitResult, fit_classifier
from medssl.train.finetune_config import FinetuneConfig, resolve_mode
from medssl.train.finetune_data import FinetuneData, load_data
from medssl.train.labels import draw_labelled_subset
from medssl.train.embedding_cache import EmbeddingCache
from medssl.train.recipe_fit import fit_anomaly, fit_recipe_classifier

log = logging.getLogger(__name__)

RUN_FILES = ("model.pt", "metrics.json", "config.yaml")  # what a fine-tune writes into RUN_DIR

__all__ = ["FinetuneConfig", "FinetuneData", "finetune", "fit_classifier", "load_data"]


def auto_settings(config: FinetuneConfig, few: FewLabelRecipe, labels: np.ndarray) -> FinetuneConfig:
    """``config`` with the settings ``--mode auto`` stands for under recipe ``few``, given the labelled
    subset's labels ``(n,)``; unchanged for other modes, semi-supervised runs or recipes without a rule."""
    if config.mode != "auto" or config.unlabelled != "ignore" or few.auto is None:
        return config
    per_class = pd.Series(labels).value_counts().tolist()
    return config.model_copy(update=few.auto(per_class, config.init == "random"))


def finetune(
    checkpoint: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    labels_csv: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Fine-tune ``checkpoint`` on the labels of ``data_dir``; writes RUN_DIR files, returns model.pt.

    RUN_DIR/model.pt (kind "model"), RUN_DIR/metrics.json (validation metrics + training log) and
    RUN_DIR/config.yaml (the resolved config). A RUN_DIR that already holds any of them is refused
    unless ``overwrite``; one that is or holds an input (the checkpoint, DATA_DIR, the labels) always.
    """
    refuse_inputs(out_dir, {"--checkpoint": checkpoint, "--data": data_dir, "--labels": labels_csv})
    for name in RUN_FILES:
        refuse_inputs(Path(out_dir) / name, {"--checkpoint": checkpoint, "--labels": labels_csv})
    refuse_run_replacement(out_dir, RUN_FILES, overwrite, "score files made with the old model.pt keep its model_id")
    config = config or FinetuneConfig()
    resolve_device(config.device)  # an unknown device or scorer name fails now, not after the training
    if config.scorer not in (None, "auto"):
        from medssl.anomaly import SCORERS

        SCORERS.get(config.scorer)
    out = Path(out_dir)
    data = load_data(checkpoint, data_dir, labels_csv)
    src = data.checkpoint.meta
    domain = str(src["domain"])
    saved = dict(src.get("recipes") or {})
    few = few_label_recipe(saved.get("few_label", "auto") if config.recipe == "auto" else config.recipe, domain)
    anomaly = anomaly_recipe(saved.get("anomaly", "auto"), domain)
    if config.mode == "recipe" and few.on_embeddings:
        raise ConfigError(f"few-label recipe {few.name!r} is a classic embedding mode: use --mode linear, knn or full")
    label_unit = default_label_unit(domain) if config.label_unit == "auto" else config.label_unit
    subset = draw_labelled_subset(
        data.patient_ids, data.labels, pool=data.train_pool(),
        fraction=config.label_fraction, shots=config.shots, seed=config.seed, unit=label_unit,
    )
    asked = config  # saved as config.yaml: a later run re-resolves "auto"
    config = auto_settings(config, few, data.labels[subset])
    mode = resolve_mode(config, few.on_embeddings)
    log.info("labelled subset: %d cases of %d patients; mode %s%s", len(subset), len(np.unique(data.patient_ids[subset])), mode,
             f" (auto: few-label recipe {few.name})" if asked.mode == "auto" else "")
    train_rows = np.flatnonzero(data.train_pool())
    if mode == "recipe":
        encoder = build_encoder(src, data.checkpoint.states["encoder"]).eval()
        cache = EmbeddingCache.for_run(data_dir, encoder, src.get("preprocessing"), data.manifest["case_id"].tolist())
        scorer = fit_anomaly(anomaly, encoder, data, train_rows, config.scorer, config.scorer_k, cache) if config.scorer else None
        result: FitResult = fit_recipe_classifier(data, subset, config, few, anomaly, scorer[0] if scorer else None, encoder, cache)
    else:
        result = fit_classifier(data, subset, None, config.model_copy(update={"mode": mode}), run_dir=out)
        scorer = fit_anomaly(anomaly, result.encoder, data, train_rows, config.scorer, config.scorer_k) if config.scorer else None
    meta = {
        "encoder": src["encoder"],
        "domain": domain,
        "preprocessing": src.get("preprocessing"),
        "input_shape": src.get("input_shape"),
        "method": src.get("method"),
        "pretrain_config": src.get("pretrain_config", src.get("config") if data.checkpoint.kind == "encoder" else None),
        "source_checkpoint": {"path": str(checkpoint), "kind": data.checkpoint.kind},
        "recipes": {"anomaly": anomaly.name, "few_label": few.name},
        "head_input": few.name if mode == "recipe" else "embedding",
        "classes": result.classes,
        "mode": mode,
        "seed": config.seed,
        "label_source": data.label_source,
        "validation_labels": data.validation_labels,
        "n_labelled": int(len(subset)),
        "label_unit": label_unit,
        **({"selection": result.head.selection} if hasattr(result.head, "selection") else {}),  # a recipe's CV choice
        "metrics": result.metrics,
        "validation": result.train_log["validation"],  # rows behind "metrics" (and early stopping in full mode)
        "config": config.model_dump(mode="json"),
    }
    # the plain supervised baseline on the same labels and validation rows (not for a held-out validation)
    baseline = supervised_baseline(data, subset, result.classes, config.seed) if result.train_log.get("validation") == "val" else None
    ckpt = model_checkpoint(result.encoder, result.head, meta, result.knn,
                            scorer[0] if scorer else None, scorer[1] if scorer else None)
    out.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(out / "model.pt", ckpt)
    write_json(
        {"validation": result.metrics, "n_labelled": int(len(subset)), "label_unit": label_unit,
         "classes": result.classes, "mode": mode, "validation_labels": data.validation_labels,
         "recipes": meta["recipes"], "training": result.train_log,
         **({"selection": meta["selection"]} if "selection" in meta else {}),
         **({"baseline": baseline} if baseline is not None else {})},
        out / "metrics.json",
    )
    save_config(asked, out / "config.yaml")
    if result.metrics:
        source = {"manifest": "the manifest's labels" + (" (the labels CSV names no val case)" if labels_csv else ""),
                  "labels CSV": "the labels CSV"}.get(str(data.validation_labels), "held-out labelled cases")
        log.info("validation AUROC %s on %d cases; validation labels: %s", result.metrics["auroc"], result.metrics["n"], source)
    return path

