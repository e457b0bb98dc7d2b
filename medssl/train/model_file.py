"""The fine-tuned model file (``RUN_DIR/model.pt``): build it, load it, predict with it.

File layout (``medssl.checkpoints``, kind ``"model"``)::

    states  {"encoder": encoder.state_dict(), "head": nn.Linear(num_features, n_classes).state_dict()}
    tensors {"scorer/<key>": anomaly scorer state (reference statistics of the train split),
             "knn/embeddings": (M, F) float32, "knn/labels": (M,) int64}      # knn mode only
    meta    {"encoder": {"name", "kwargs"}, "domain", "preprocessing", "classes", "mode", "seed",
             "label_source", "n_labelled", "metrics", "config", "method",
             "scorer": {"name", "kwargs"} | None, "knn": {"k"} (knn mode only)}

How a model predicts (``predict_proba``): ``softmax(head(encoder(x)))``, except in ``"knn"`` mode,
where the class probabilities are a distance-weighted vote of the ``k`` nearest labelled
embeddings (cosine distance, scikit-learn ``KNeighborsClassifier``), divided by each class's share
of the labelled cases and renormalised (so a rare class is not out-voted by sheer numbers). A knn
model's ``head`` is still a working classifier for tools that only read ``{"encoder","head"}``:
a nearest-centroid rule on L2-normalised embeddings (logits = 10 x cosine to each class mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import nn
from torch.utils.data import Dataset

from medssl.checkpoints import Checkpoint, load_checkpoint
from medssl.encoders.registry import create_encoder
from medssl.errors import CheckpointError
from medssl.train.embed import embed

SCORER_PREFIX = "scorer/"
KNN_PREFIX = "knn/"
CENTROID_SCALE = 10.0


def build_encoder(meta: dict[str, Any], state: dict[str, torch.Tensor] | None) -> nn.Module:
    """The encoder named in ``meta["encoder"]``, with ``state`` loaded (random init if ``None``)."""
    spec = meta["encoder"]
    encoder = create_encoder(spec["name"], **spec.get("kwargs", {}))
    if state is not None:
        try:
            encoder.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(
                f"the encoder weights do not fit encoder {spec['name']!r} with {spec.get('kwargs')}: {first}"
            ) from None
    return encoder


@dataclass
class KnnMemory:
    """Labelled embeddings ``(M, F)`` and class ids ``(M,)`` for kNN prediction with ``k`` neighbours."""

    embeddings: torch.Tensor
    labels: torch.Tensor
    k: int

    def predict_proba(self, emb: torch.Tensor, n_classes: int) -> np.ndarray:
        """Class probabilities ``(N, n_classes)`` of query embeddings ``emb`` ``(N, F)``."""
        ref = self.embeddings.double().numpy()
        y = self.labels.numpy()
        knn = KNeighborsClassifier(n_neighbors=min(self.k, len(y)), weights="distance", metric="cosine")
        knn.fit(ref, y)
        proba = np.zeros((emb.shape[0], n_classes))
        proba[:, knn.classes_] = knn.predict_proba(emb.double().numpy())
        prior = np.bincount(y, minlength=n_classes) / len(y)
        proba = proba / np.where(prior > 0, prior, 1.0)
        total = proba.sum(axis=1, keepdims=True)
        return np.where(total > 0, proba / np.where(total > 0, total, 1.0), 1.0 / n_classes)


def centroid_head(embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int) -> nn.Linear:
    """Nearest-centroid classifier as ``nn.Linear``: weight row c = unit mean of class c's unit embeddings.

    It sees raw embeddings, so it is exact for cosine ranking only up to the query's norm (which
    does not change the argmax or the ranking within a class column scaled by a positive factor).
    """
    unit = nn.functional.normalize(embeddings.float(), dim=1)
    head = nn.Linear(unit.shape[1], n_classes)
    with torch.no_grad():
        for c in range(n_classes):
            mean = unit[labels == c].mean(dim=0) if (labels == c).any() else torch.zeros(unit.shape[1])
            head.weight[c] = CENTROID_SCALE * nn.functional.normalize(mean, dim=0)
        head.bias.zero_()
    return head


@dataclass
class FineTunedModel:
    """A loaded model file: ``encoder`` (x -> (B, F)), ``head`` ((B, F) -> (B, C) logits), extras."""

    encoder: nn.Module
    head: nn.Linear
    classes: list[str]
    meta: dict[str, Any]
    knn: KnnMemory | None = None
    scorer: Any | None = None

    @property
    def mode(self) -> str:
        return str(self.meta.get("mode", "linear"))

    def proba_from_embeddings(self, emb: torch.Tensor) -> np.ndarray:
        """Class probabilities ``(N, C)`` for embeddings ``(N, F)`` (see the module docstring)."""
        if self.knn is not None:
            return self.knn.predict_proba(emb, len(self.classes))
        with torch.no_grad():
            logits = self.head(emb.to(self.head.weight.device, self.head.weight.dtype))
        return torch.softmax(logits.double(), dim=1).cpu().numpy()


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


def load_model(path: str | Path, device: torch.device | str = "cpu") -> FineTunedModel:
    """Load ``model.pt`` (weights_only, digest checked) into a ready-to-predict ``FineTunedModel``."""
    ckpt = load_checkpoint(path, expect_kind="model")
    meta = ckpt.meta
    for key in ("classes", "domain"):
        if key not in meta:
            raise CheckpointError(f"{path} lacks meta[{key!r}]; it was not written by `medssl finetune`")
    encoder = build_encoder(meta, ckpt.states["encoder"]).to(device).eval()
    head_state = ckpt.states.get("head")
    if head_state is None:
        raise CheckpointError(f"{path} has no classification head; re-run `medssl finetune`")
    head = nn.Linear(head_state["weight"].shape[1], head_state["weight"].shape[0])
    head.load_state_dict(head_state)
    knn = None
    if KNN_PREFIX + "embeddings" in ckpt.tensors:
        knn = KnnMemory(
            ckpt.tensors[KNN_PREFIX + "embeddings"], ckpt.tensors[KNN_PREFIX + "labels"], int(meta["knn"]["k"])
        )
    scorer = None
    spec = meta.get("scorer")
    if spec:
        from medssl.scoring.scorers import load_scorer

        state = {k[len(SCORER_PREFIX) :]: v for k, v in ckpt.tensors.items() if k.startswith(SCORER_PREFIX)}
        scorer = load_scorer(spec["name"], state, **spec.get("kwargs", {}))
    return FineTunedModel(encoder, head.to(device).eval(), list(meta["classes"]), meta, knn, scorer)


def predict_proba(
    model: FineTunedModel, dataset: Dataset, batch_size: int = 256, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Class probabilities ``(N, C)`` for every item of ``dataset`` (column c = ``model.classes[c]``)."""
    model.encoder.to(device)
    model.head.to(device)
    emb = embed(model.encoder, dataset, batch_size=batch_size, device=device, desc="predicting")
    model.head.cpu()
    return model.proba_from_embeddings(emb)
