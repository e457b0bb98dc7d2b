"""The evaluate report: REPORT_JSON (DESIGN.md contract) plus its plots REPORT.roc.png, .pr.png, .confusion.png.

REPORT_JSON::

    {"n": N, "metrics": {"auroc", "auprc", "accuracy", "balanced_accuracy", "macro_f1",
                         "per_class": {CLASS: {"precision", "recall", "f1", "support"}}},
     "ci95": {metric: [lo, hi]},            # patient-level bootstrap
     "n_patients", "split", "classes", "n_bootstrap", "model_id", "plots"}   # context
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medssl.atomic import write_json  # re-exported: the report's JSON writer
from medssl.metrics import classification_metrics, patient_bootstrap_ci

__all__ = ["build_report", "write_json", "write_plots"]


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


def _figure() -> Any:
    """A new 5 x 5 inch matplotlib ``Figure`` and its axes, outside pyplot: saving it renders with
    Agg whatever backend the process uses, and no global backend is switched (a notebook that
    calls ``evaluate`` keeps its inline plots)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    return fig, fig.subplots()


def _curves(kind: str, y: np.ndarray, proba: np.ndarray, classes: Sequence[str], path: Path) -> None:
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    display = RocCurveDisplay if kind == "roc" else PrecisionRecallDisplay
    fig, ax = _figure()
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


def write_plots(
    y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str], out_dir: str | Path, stem: str = ""
) -> dict[str, str]:
    """Write the ROC, PR and confusion plots into ``out_dir``; returns ``{name: file name}``.

    The files are ``STEM.roc.png``, ``STEM.pr.png`` and ``STEM.confusion.png`` (``stem``: the
    report's file name without ``.json``), so two reports in one folder keep their own plots;
    without a stem, ``roc.png``, ``pr.png`` and ``confusion.png``.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = {kind: f"{stem}.{kind}.png" if stem else f"{kind}.png" for kind in ("roc", "pr", "confusion")}
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64)
    _curves("roc", y, p, classes, out / names["roc"])
    _curves("pr", y, p, classes, out / names["pr"])
    fig, ax = _figure()
    ConfusionMatrixDisplay.from_predictions(
        y, p.argmax(axis=1), labels=list(range(p.shape[1])), display_labels=list(classes), ax=ax, colorbar=False
    )
    ax.set_title("Confusion matrix (rows: true, columns: predicted)")
    fig.tight_layout()
    fig.savefig(out / names["confusion"], dpi=100)
    return names
