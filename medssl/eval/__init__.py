"""Metrics with confidence intervals, label-fraction curves, reports and plots."""

from medssl.eval.metrics import (
    SUMMARY_METRICS,
    auprc,
    auroc,
    classification_metrics,
    patient_bootstrap_ci,
    per_class_metrics,
    point_metrics,
)

__all__ = [
    "SUMMARY_METRICS",
    "auprc",
    "auroc",
    "classification_metrics",
    "patient_bootstrap_ci",
    "per_class_metrics",
    "point_metrics",
]
