"""A model file loaded for scoring: encoder + optional classification head + anomaly scorer.

Any medssl file works: a fine-tuned model (``medssl finetune`` -> ``model.pt``, kind "model",
states ``{"encoder", "head"}``) or a pretrained encoder (``medssl pretrain`` -> ``checkpoint.pt``,
kind "encoder", no head). The anomaly scorer's reference statistics travel in the file's tensors
under the prefix ``scorer/`` (or ``scorer.``) with ``meta["scorer"] = {"name", "kwargs"}`` (or the name); a file without them gets
a scorer fitted at scoring time (see ``medssl.scoring.job``).

Files are read through ``medssl.checkpoints.load_checkpoint`` (``weights_only=True`` and a digest
check), so foreign, corrupt and tampered files are refused with a ``CheckpointError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medssl.checkpoints import Checkpoint, file_sha256, load_checkpoint
from medssl.encoders.inference import InferenceEncoder
from medssl.encoders.registry import create_encoder
from medssl.errors import CheckpointError

SCORER_PREFIXES = ("scorer/", "scorer.")
DEFAULT_FLAG_PERCENTILE = 95.0


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``/``"cuda"`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def restore_scorer(name: str, kwargs: dict[str, Any], state: dict[str, torch.Tensor]) -> Any:
    """Rebuild a fitted anomaly scorer from its registry name and ``state_dict()`` (no refit).

    Hyperparameters travel in the state; ``kwargs`` only carries what a state cannot (none for
    the built-in kNN and Mahalanobis scorers).
    """
    from medssl.scoring.scorers import load_scorer

    extra = {k: v for k, v in kwargs.items() if k == "reconstruct"}
    return load_scorer(name, state, **extra)


@dataclass
class ScoringModel:
    """Everything the scoring job needs from one model file, ready for inference.

    ``encoder(x)`` maps a batch ``(B, *input_shape)`` to embeddings ``(B, D)`` (an
    ``InferenceEncoder``: the file's encoder in inference form, ``encoder.original`` as saved); ``head`` (when the
    file has one) maps embeddings to class logits ``(B, C)`` with ``classes[c]`` the label of
    class ``c``; ``scorer`` maps embeddings ``(N, D)`` to anomaly scores ``(N,)`` and percentiles.
    """

    path: Path
    model_id: str
    kind: str
    meta: dict[str, Any]
    encoder: nn.Module
    head: nn.Linear | None
    classes: list[str]
    scorer: Any | None
    scorer_name: str | None
    scorer_kwargs: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    knn: Any | None = None  # medssl.train.model_file.KnnMemory of a "knn"-mode fine-tune

    @property
    def domain(self) -> str:
        return str(self.meta["domain"])

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        return self.meta.get("preprocessing")

    @property
    def default_flag_percentile(self) -> float:
        """The model's own flagging rule (``meta["flag_percentile"]``), else 95."""
        return float(self.meta.get("flag_percentile", DEFAULT_FLAG_PERCENTILE))

    def scorer_state(self) -> dict[str, torch.Tensor] | None:
        """The fitted scorer's ``state_dict()`` (to ship it to Ray actors), or ``None``."""
        return None if self.scorer is None else dict(self.scorer.state_dict())

    def set_scorer(self, name: str, kwargs: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        """Use the scorer ``name`` with reference statistics ``state`` (fitted elsewhere)."""
        self.scorer = restore_scorer(name, kwargs, state)
        self.scorer_name, self.scorer_kwargs = name, dict(kwargs)

    @torch.inference_mode()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, D)`` float32 on the CPU for inputs ``(B, *input_shape)``."""
        return self.encoder(x.to(self.device, non_blocking=True)).float().cpu()

    @torch.inference_mode()
    def predict(self, emb: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
        """``(labels (B,) object, proba (B,) float64)`` of the most likely class, or ``None`` without a head.

        ``proba`` is the probability of the predicted label: the head's softmax, or for a model
        fine-tuned in "knn" mode the same labelled-neighbour vote that ``medssl evaluate`` uses.
        """
        if self.head is None:
            return None
        if self.knn is not None:
            proba = torch.from_numpy(self.knn.predict_proba(emb.cpu(), len(self.classes)))
        else:
            proba = torch.softmax(self.head(emb.to(self.device)).double().cpu(), dim=1)
        best_p, best = proba.max(dim=1)
        labels = np.asarray([self.classes[i] for i in best.tolist()], dtype=object)
        return labels, best_p.double().numpy()

    def anomaly(self, emb: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (N,), percentiles (N,) in [0, 100])`` of embeddings ``(N, D)``."""
        if self.scorer is None:
            raise RuntimeError("the model has no fitted anomaly scorer; fit one before scoring")
        scores = np.asarray(self.scorer.score(emb), dtype=np.float64).reshape(-1)
        pct = np.asarray(self.scorer.percentile(scores), dtype=np.float64).reshape(-1)
        return scores, pct


def _build_head(ckpt: Checkpoint, num_features: int, path: Path) -> tuple[nn.Linear | None, list[str]]:
    head_state = ckpt.states.get("head")
    if not head_state:
        return None, []
    weight = head_state.get("weight")
    if weight is None or weight.ndim != 2 or weight.shape[1] != num_features:
        raise CheckpointError(
            f"{path} has a head that is not an nn.Linear({num_features}, n_classes) over the encoder's "
            "features; re-create the model with `medssl finetune`"
        )
    classes = [str(c) for c in ckpt.meta.get("classes", [])]
    if len(classes) != weight.shape[0]:
        raise CheckpointError(
            f"{path} has a head with {weight.shape[0]} outputs but meta['classes'] lists {len(classes)} "
            "labels; re-create the model with `medssl finetune`"
        )
    head = nn.Linear(num_features, weight.shape[0], bias="bias" in head_state)
    head.load_state_dict(head_state)
    return head.eval(), classes


def _load_scorer(ckpt: Checkpoint) -> tuple[Any | None, str | None, dict[str, Any]]:
    spec = ckpt.meta.get("scorer")
    state = {k[len("scorer/"):]: v for k, v in ckpt.tensors.items() if k.startswith(SCORER_PREFIXES)}
    if not spec or not state:
        return None, None, {}
    # meta["scorer"] is {"name", "kwargs"} (medssl finetune) or just the scorer's name
    name = str(spec["name"]) if isinstance(spec, dict) else str(spec)
    kwargs = dict(spec.get("kwargs") or {}) if isinstance(spec, dict) else {}
    return restore_scorer(name, kwargs, state), name, kwargs


def _load_knn(ckpt: Checkpoint) -> Any | None:
    """The labelled-embedding memory of a model fine-tuned with ``--mode knn`` (else ``None``)."""
    if "knn/embeddings" not in ckpt.tensors or not isinstance(ckpt.meta.get("knn"), dict):
        return None
    from medssl.train.model_file import KnnMemory

    return KnnMemory(ckpt.tensors["knn/embeddings"], ckpt.tensors["knn/labels"], int(ckpt.meta["knn"]["k"]))


def load_scoring_model(path: str | Path, device: str = "auto") -> ScoringModel:
    """Load any medssl model file (kind "model" or "encoder") for scoring.

    Raises ``CheckpointError`` for a file that is not a medssl file, was tampered with, or lacks
    what scoring needs (domain, encoder weights that fit the registered encoder).
    """
    path = Path(path)
    ckpt = load_checkpoint(path)
    meta = ckpt.meta
    if not meta.get("domain"):
        raise CheckpointError(f"{path} does not say which data domain it was trained on (meta['domain'])")
    if "encoder" not in ckpt.states:
        raise CheckpointError(f"{path} holds no encoder weights (states['encoder']); it cannot score")
    enc_spec = meta["encoder"]
    encoder = create_encoder(enc_spec["name"], **dict(enc_spec.get("kwargs") or {}))
    try:
        encoder.load_state_dict(ckpt.states["encoder"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: its encoder weights do not fit encoder {enc_spec['name']!r} with the saved "
            f"arguments ({first}); the file is damaged or was written by an incompatible medssl"
        ) from None
    dev = resolve_device(device)
    head, classes = _build_head(ckpt, int(encoder.num_features), path)
    scorer, scorer_name, scorer_kwargs = _load_scorer(ckpt)
    return ScoringModel(
        path=path,
        model_id=file_sha256(path),
        kind=ckpt.kind,
        meta=meta,
        encoder=InferenceEncoder(encoder, dev),  # batch-norm folded, channels-last on CPU: same embeddings, faster
        head=None if head is None else head.to(dev),
        classes=classes,
        scorer=scorer,
        scorer_name=scorer_name,
        scorer_kwargs=scorer_kwargs,
        device=dev,
        knn=_load_knn(ckpt) if head is not None else None,
    )
