"""The supervised baseline a fine-tune is measured against, in the same run: a plain scikit-learn
logistic regression on the standardised raw inputs (no pretraining, no encoder), trained on the
same labelled cases and scored on the same validation rows as the fine-tuned model.

It is what a data scientist would try first without medssl, so the fine-tune's metrics next to it
say what the pretraining bought with these labels (``medssl label-efficiency`` measures the whole
curve, with the same architecture trained from scratch as its baseline).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.metrics import classification_metrics
from medssl.train.classifier import class_ids, known_rows
from medssl.train.finetune_data import FinetuneData

log = logging.getLogger(__name__)

CHUNK = 1024  # validation cases decoded at a time
METHOD = "logistic regression on the standardised raw inputs (scikit-learn; no pretraining)"


def _inputs(data: FinetuneData, rows: np.ndarray) -> np.ndarray:
    """The raw model inputs of ``rows`` flattened: ``(len(rows), prod(input_shape))`` float32."""
    return np.stack([np.asarray(data.dataset[int(i)], dtype=np.float32).reshape(-1) for i in rows])


def supervised_baseline(data: FinetuneData, subset: np.ndarray, classes: list[str], seed: int = 0) -> dict[str, Any]:
    """Fit the baseline on the labelled ``subset`` rows, measure it on the labelled val rows of a
    class in ``classes`` (the rows the fine-tune's validation metrics use).

    Returns ``{"method", "n_train", "validation": {"n", "auroc", ...}}``, or ``{"method", "skipped":
    reason}`` when there is no labelled val split or the subset holds a single class.
    """
    if data.split is None:
        return {"method": METHOD, "skipped": "the manifest has no val split to measure on"}
    val_rows = known_rows(data, np.flatnonzero((data.split == "val") & pd.notna(data.labels)), classes)
    if not len(val_rows):
        return {"method": METHOD, "skipped": "no labelled val case of a trained class"}
    y_train = class_ids(data.labels, np.asarray(subset), classes)
    if len(np.unique(y_train)) < 2:
        return {"method": METHOD, "skipped": "the labelled cases hold a single class"}
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(_inputs(data, np.asarray(subset)), y_train)
    proba = np.zeros((len(val_rows), len(classes)))
    for start in range(0, len(val_rows), CHUNK):  # in chunks: a large val split of images never sits in memory whole
        proba[start:start + CHUNK, model.classes_] = model.predict_proba(_inputs(data, val_rows[start:start + CHUNK]))
    metrics = {"n": int(len(val_rows)), **classification_metrics(class_ids(data.labels, val_rows, classes), proba, classes)}
    log.info("supervised baseline (%s): validation AUROC %s on %d cases", METHOD, metrics["auroc"], metrics["n"])
    return {"method": METHOD, "n_train": int(len(subset)), "validation": metrics}
