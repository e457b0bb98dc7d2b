"""The evaluate report: REPORT_JSON (DESIGN.md contract) plus roc.png, pr.png and confusion.png.

REPORT_JSON::

    {"n": N, "metrics": {"auroc", "auprc", "accuracy", "balanced_accuracy", "macro_f1",
                         "per_class": {CLASS: {"precision", "recall", "f1", "support"}}},
     "ci95": {metric: [lo, hi]},            # patient-level bootstrap
     "n_patients", "split", "classes", "n_bootstrap", "model_id", "plots"}   # context
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
)

from medssl.atomic import atomic_write
from medssl.eval.metrics import classification_metrics, patient_bootstrap_ci  # noqa: E402


def build_report(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    patient_ids: Sequence[Any],
    n_boot: int = 1000,
    seed: int = 0,
    **context: Any,
) -> dict[str, Any]:
    """The report dict for labels ``y_true`` (N,) and probabilities ``proba`` (N, C)."""
    return {
        "n": int(len(y_true)),
        "metrics": classification_metrics(y_true, proba, classes),
        "ci95": patient_bootstrap_ci(y_true, proba, patient_ids, n_boot=n_boot, seed=seed),
        "n_patients": int(len(set(map(str, patient_ids)))),
        "classes": [str(c) for c in classes],
        "n_bootstrap": int(n_boot),
        **context,
    }


def write_json(obj: dict[str, Any], path: str | Path) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN is refused: undefined metrics are null)."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, allow_nan=False)
            fh.write("\n")

    return atomic_write(path, write)


def _curves(kind: str, y: np.ndarray, proba: np.ndarray, classes: Sequence[str], path: Path) -> None:
    display = RocCurveDisplay if kind == "roc" else PrecisionRecallDisplay
    fig, ax = plt.subplots(figsize=(5, 5))
    columns = [1] if proba.shape[1] == 2 else range(proba.shape[1])
    for c in columns:
        positives = y == c
        if positives.all() or not positives.any():
            continue  # curve undefined with one class only
        display.from_predictions(positives.astype(int), proba[:, c], name=f"{classes[c]} vs rest", ax=ax)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
    ax.set_title("ROC curve" if kind == "roc" else "Precision-recall curve")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str], out_dir: str | Path) -> dict[str, str]:
    """Write roc.png, pr.png and confusion.png into ``out_dir``; returns ``{name: file name}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64)
    _curves("roc", y, p, classes, out / "roc.png")
    _curves("pr", y, p, classes, out / "pr.png")
    fig, ax = plt.subplots(figsize=(5, 5))
    ConfusionMatrixDisplay.from_predictions(
        y, p.argmax(axis=1), labels=list(range(p.shape[1])), display_labels=list(classes), ax=ax, colorbar=False
    )
    ax.set_title("Confusion matrix (rows: true, columns: predicted)")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=100)
    plt.close(fig)
    return {"roc": "roc.png", "pr": "pr.png", "confusion": "confusion.png"}
