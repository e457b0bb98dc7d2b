"""The one model-file format: what ``medssl pretrain`` and ``medssl finetune`` write.

A file is a ``medssl.checkpoints`` checkpoint (``torch.load(weights_only=True)``, digest over
meta and tensors) of kind ``"encoder"`` (``RUN_DIR/checkpoint.pt``: a pretrained encoder) or
``"model"`` (``RUN_DIR/model.pt``: encoder + classifier + fitted anomaly scorer)::

    states  {"encoder": encoder.state_dict(),
             "head": nn.Linear(P, n_classes).state_dict()}         # "model" only
    tensors {"scorer/<key>": the anomaly scorer's state (fitted on the train split),
             "knn/embeddings": (M, F) float32, "knn/labels": (M,) int64}   # knn mode only

``meta`` (``ModelMeta``) is JSON-able and fully describes how to re-apply the model.
"""

from __future__ import annotations

from typing import Any, TypedDict

import torch
from torch import nn

from medssl.checkpoints import Checkpoint
from medssl.encoders.registry import create_encoder
from medssl.errors import CheckpointError
from medssl.models.knn_memory import KnnMemory

SCORER_PREFIXES = ("scorer/", "scorer.")
SCORER_PREFIX = "scorer/"
KNN_PREFIX = "knn/"
HEAD_INPUT_EMBEDDING = "embedding"


class ModelMeta(TypedDict, total=False):
    """The ``meta`` of a model file. Keys (all JSON-able):

    - ``encoder``: ``{"name", "kwargs"}``, rebuilt from the encoder registry;
    - ``domain``: the data domain (``medssl.data`` registry); ``preprocessing``: the domain
      dataset's fitted preprocessing, re-applied as is;
    - ``method``, ``config``, ``pretrain_config``, ``n_cases``, ``n_patients``, ``num_features``,
      ``input_shape``: how the encoder was trained;
    - ``recipes``: ``{"anomaly": name, "few_label": name}`` (``medssl.domains``): the anomaly
      scorer reads the anomaly recipe's features; the head reads the few-label recipe's features
      when ``head_input`` names that recipe, the embeddings when it is ``"embedding"``;
    - ``scorer``: ``{"name", "kwargs"}`` of the fitted scorer stored under ``scorer/`` (or ``None``);
    - "model" files also: ``classes`` (head output c = ``classes[c]``), ``mode`` (linear, knn,
      full or recipe), ``head_input``, ``knn`` (``{"k"}``, knn mode), ``seed``, ``label_source``,
      ``n_labelled``, ``metrics``, ``validation``, ``source_checkpoint``, ``flag_percentile``.
    """

    encoder: dict[str, Any]
    domain: str
    preprocessing: dict[str, Any] | None
    method: str | None
    config: dict[str, Any]
    pretrain_config: dict[str, Any] | None
    recipes: dict[str, str]
    scorer: dict[str, Any] | None
    classes: list[str]
    mode: str
    head_input: str
    knn: dict[str, int]
    flag_percentile: float


def build_encoder(meta: dict[str, Any], state: dict[str, torch.Tensor] | None) -> nn.Module:
    """The encoder named in ``meta["encoder"]``, with ``state`` loaded (random init if ``None``).

    A malformed description (not ``{"name": str, "kwargs": dict}``, unknown arguments, sizes that
    cannot be allocated) raises ``CheckpointError``.
    """
    spec = meta.get("encoder")
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("kwargs") or {}, dict)):
        raise CheckpointError(
            'the file\'s meta has no valid encoder description (needs "encoder": {"name": str, "kwargs": {...}}); '
            "the file is damaged or was not written by medssl"
        )
    try:
        encoder = create_encoder(spec["name"], **dict(spec.get("kwargs") or {}))
    except (TypeError, ValueError, RuntimeError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(
            f"the file's encoder {spec['name']!r} with arguments {spec.get('kwargs')} cannot be built ({first}); "
            "the file is damaged or was written by an incompatible medssl"
        ) from None
    if state is not None:
        try:
            encoder.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(
                f"the encoder weights do not fit encoder {spec['name']!r} with the saved arguments "
                f"{spec.get('kwargs')} ({first}); the file is damaged or was written by an incompatible medssl"
            ) from None
    return encoder


def model_checkpoint(
    encoder: nn.Module,
    head: nn.Linear,
    meta: dict[str, Any],
    knn: KnnMemory | None = None,
    scorer: Any | None = None,
    scorer_spec: dict[str, Any] | None = None,
) -> Checkpoint:
    """The ``Checkpoint`` (kind "model") of a fine-tuned model; ``meta`` must hold encoder/domain/classes."""
    tensors: dict[str, torch.Tensor] = {}
    meta = dict(meta)
    meta["scorer"] = None
    meta.setdefault("head_input", HEAD_INPUT_EMBEDDING)
    if scorer is not None:
        tensors.update({SCORER_PREFIX + k: v for k, v in scorer.state_dict().items()})
        meta["scorer"] = scorer_spec
    if knn is not None:
        tensors[KNN_PREFIX + "embeddings"] = knn.embeddings.float()
        tensors[KNN_PREFIX + "labels"] = knn.labels.long()
        meta["knn"] = {"k": int(knn.k)}
    return Checkpoint(
        kind="model",
        meta=meta,
        states={"encoder": encoder.state_dict(), "head": head.state_dict()},
        tensors=tensors,
    )
