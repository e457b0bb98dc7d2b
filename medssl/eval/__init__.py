"""Metrics with confidence intervals, label-fraction curves, reports and plots.

Names are re-exported lazily (see medssl.lazy)."""

from medssl.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "SUMMARY_METRICS": "medssl.eval.metrics",
        "auprc": "medssl.eval.metrics",
        "auroc": "medssl.eval.metrics",
        "classification_metrics": "medssl.eval.metrics",
        "patient_bootstrap_ci": "medssl.eval.metrics",
        "per_class_metrics": "medssl.eval.metrics",
        "point_metrics": "medssl.eval.metrics",
    },
)
