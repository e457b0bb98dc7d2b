"""medssl: self-supervised learning for medical and sensor data.

The loop: ingest -> pretrain (no labels) -> fine-tune (few labels) -> score -> review -> labels.
The Python API (``medssl.ingest``, ``pretrain``, ``finetune``, ``evaluate``, ``score``,
``load_model``, ``list_methods``) lives in ``medssl.api`` and is imported on first use, so ``import medssl`` and
``medssl --help`` stay fast.
"""

from medssl.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, _api = lazy_exports("medssl", {name: "medssl.api" for name in (
    "ingest", "pretrain", "finetune", "evaluate", "score", "load_model", "Model", "list_methods")})
__all__ = ["__version__", *_api]
