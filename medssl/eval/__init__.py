"""Metrics with confidence intervals, label-fraction curves, reports and plots.

Names are re-exported lazily (see medssl.lazy)."""

from medssl.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "SUMMARY_METRICS": "medssl.metrics",
        "auprc": "medssl.metrics",
        "auroc": "medssl.metrics",
        "classification_metrics": "medssl.metrics",
        "patient_bootstrap_ci": "medssl.metrics",
        "per_class_metrics": "medssl.metrics",
        "point_metrics": "medssl.metrics",
    },
)
