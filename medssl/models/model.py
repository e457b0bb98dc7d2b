"""The one loader: any medssl model file, ready to embed, score and predict.

``load_model(path)`` reads a pretrained encoder (``checkpoint.pt``, kind "encoder") or a
fine-tuned model (``model.pt``, kind "model") through ``medssl.checkpoints.load_checkpoint``
(``weights_only=True`` and a digest check: foreign, corrupt and tampered files are refused with a
``CheckpointError``) and gives a ``Model``. ``medssl score``, ``medssl evaluate``, fine-tuning
and the Python API all go through it, so a case is computed the same way everywhere:

    x (B, *input_shape) -> encoder -> emb (B, D)
    anomaly recipe features(x, emb) (B, P) -> scorer -> anomaly score (B,), percentile (B,)
    head input = emb, or the few-label recipe's features(x, emb, percentile) -> softmax (B, C)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medssl.checkpoints import Checkpoint, file_sha256, load_checkpoint
from medssl.domains import AnomalyRecipe, FewLabelRecipe, anomaly_recipe, few_label_recipe
from medssl.domains.recipe import embedding_features
from medssl.encoders.inference import InferenceEncoder
from medssl.errors import CheckpointError, ConfigError
from medssl.models.embed import resolve_device
from medssl.models.knn_memory import KnnMemory
from medssl.models.model_file import HEAD_INPUT_EMBEDDING, KNN_PREFIX, SCORER_PREFIXES, build_encoder

DEFAULT_FLAG_PERCENTILE = 95.0


def restore_scorer(name: str, kwargs: dict[str, Any], state: dict[str, torch.Tensor]) -> Any:
    """Rebuild a fitted anomaly scorer from its registry name and ``state_dict()`` (no refit).

    Hyperparameters travel in the state; ``kwargs`` only carries what a state cannot.
    """
    from medssl.anomaly import load_scorer

    extra = {k: v for k, v in kwargs.items() if k == "reconstruct"}
    return load_scorer(name, state, **extra)


@dataclass
class BatchOutput:
    """One batch through a model: ``embeddings`` ``(B, D)`` float32; ``anomaly_score`` and
    ``anomaly_percentile`` ``(B,)`` float64 (``None`` without a scorer); ``proba`` ``(B, C)``
    float64 (``None`` without a head)."""

    embeddings: torch.Tensor
    anomaly_score: np.ndarray | None
    anomaly_percentile: np.ndarray | None
    proba: np.ndarray | None


@dataclass
class Model:
    """A loaded model file (see the module docstring).

    ``encoder`` maps ``(B, *input_shape)`` to ``(B, D)`` (an ``InferenceEncoder``: the file's encoder
    in inference form, ``encoder.original`` as saved); ``head`` (fine-tuned files) maps the head
    input to logits ``(B, C)`` with ``classes[c]`` the label of class ``c``; ``scorer`` maps the
    anomaly recipe's features ``(N, P)`` to scores ``(N,)`` and percentiles.
    """

    path: Path | None
    model_id: str
    kind: str
    meta: dict[str, Any]
    encoder: nn.Module
    head: nn.Linear | None
    classes: list[str]
    anomaly_recipe: AnomalyRecipe
    few_label_recipe: FewLabelRecipe | None  # set when the head reads that recipe's features
    scorer: Any | None = None
    scorer_name: str | None = None
    scorer_kwargs: dict[str, Any] = field(default_factory=dict)
    knn: KnnMemory | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    # ---- what the file says -------------------------------------------------------------
    @property
    def domain(self) -> str:
        return str(self.meta["domain"])

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        return self.meta.get("preprocessing")

    @property
    def mode(self) -> str:
        return str(self.meta.get("mode", "linear"))

    @property
    def default_flag_percentile(self) -> float:
        """The model's own flagging rule (``meta["flag_percentile"]``), else 95."""
        return float(self.meta.get("flag_percentile", DEFAULT_FLAG_PERCENTILE))

    @property
    def recipes(self) -> dict[str, str]:
        """``{"anomaly": name, "few_label": name}`` this model applies."""
        out = {"anomaly": self.anomaly_recipe.name}
        if self.few_label_recipe is not None:
            out["few_label"] = self.few_label_recipe.name
        return out

    def scorer_state(self) -> dict[str, torch.Tensor] | None:
        """The fitted scorer's ``state_dict()`` (to ship it to Ray actors), or ``None``."""
        return None if self.scorer is None else dict(self.scorer.state_dict())

    def set_scorer(self, name: str, kwargs: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        """Use the scorer ``name`` with reference statistics ``state`` (fitted elsewhere)."""
        self.scorer = restore_scorer(name, kwargs, state)
        self.scorer_name, self.scorer_kwargs = name, dict(kwargs)

    # ---- one batch ------------------------------------------------------------------------
    @torch.inference_mode()
    def embed_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, D)`` float32 on the CPU for one batch of inputs ``(B, *input_shape)``."""
        return self.encoder(x.to(self.device, non_blocking=True)).float().cpu()

    def anomaly_features(self, x: torch.Tensor, emb: torch.Tensor) -> np.ndarray:
        """What the anomaly scorer reads: ``(B, P)`` (the anomaly recipe's features)."""
        return self.anomaly_recipe.features(x, emb, self.preprocessing or {})

    def anomaly(self, features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (N,), percentiles (N,) in [0, 100])`` of anomaly features ``(N, P)``."""
        if self.scorer is None:
            raise RuntimeError("the model has no fitted anomaly scorer; fit one before scoring")
        scores = np.asarray(self.scorer.score(features), dtype=np.float64).reshape(-1)
        pct = np.asarray(self.scorer.percentile(scores), dtype=np.float64).reshape(-1)
        return scores, pct

    @torch.inference_mode()
    def class_proba(self, x: torch.Tensor, emb: torch.Tensor, percentile: np.ndarray | None) -> np.ndarray | None:
        """Class probabilities ``(B, C)`` float64 (column c = ``classes[c]``), ``None`` without a head."""
        if self.head is None:
            return None
        if self.knn is not None:
            return self.knn.predict_proba(emb.cpu(), len(self.classes))
        if self.few_label_recipe is not None:
            if percentile is None:
                raise CheckpointError(f"{self.path}: its classifier reads anomaly percentiles but it has no scorer")
            feats = self.few_label_recipe.features(x, emb, percentile, self.preprocessing or {})
            inp = torch.as_tensor(feats, dtype=torch.float32)
        else:
            inp = emb.float()
        logits = self.head(inp.to(self.device))
        return torch.softmax(logits.double(), dim=1).cpu().numpy()

    def predict(self, proba: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """``(labels (B,) object, proba (B,) float64)`` of the most likely class, from ``class_proba``."""
        if proba is None:
            return None
        best = proba.argmax(axis=1)
        labels = np.asarray([self.classes[i] for i in best.tolist()], dtype=object)
        return labels, proba[np.arange(len(best)), best].astype(np.float64)

    @property
    def needs_inputs(self) -> bool:
        """Whether scoring reads the inputs ``x`` besides the embeddings (a recipe on raw columns);
        when not, ``run_embedded(None, emb)`` scores many batches' embeddings at once."""
        return (self.anomaly_recipe.features is not embedding_features or getattr(self.encoder, "has_proba", False)
                or (self.few_label_recipe is not None and self.head is not None and self.knn is None))

    def run_batch(self, x: torch.Tensor) -> BatchOutput:
        """Embed, anomaly-score and classify one batch ``(B, *input_shape)``."""
        if getattr(self.encoder, "has_proba", False):  # an ONNX graph with the head: one run gives both
            emb, proba = self.encoder.run(x)
            out = self.run_embedded(x, emb, with_proba=False)
            out.proba = proba
            return out
        return self.run_embedded(x, self.embed_batch(x))

    def run_embedded(self, x: torch.Tensor | None, emb: torch.Tensor, with_proba: bool = True) -> BatchOutput:
        """Anomaly-score and classify embeddings ``(B, D)`` of inputs ``x`` (``None`` allowed
        when ``needs_inputs`` is false); ``with_proba=False`` leaves ``proba`` to the caller."""
        score = pct = None
        if self.scorer is not None:
            score, pct = self.anomaly(self.anomaly_features(x, emb))
        return BatchOutput(emb, score, pct, self.class_proba(x, emb, pct) if with_proba else None)

    # ---- whole data sets (the Python API) -------------------------------------------------
    def _batches(self, data: Any, batch_size: int) -> Any:
        from torch.utils.data import DataLoader

        if isinstance(data, (str, Path)):
            from medssl.data import get_domain, read_manifest

            if self.preprocessing is None:
                raise CheckpointError(f"{self.path} carries no preprocessing; it cannot read a DATA_DIR")
            manifest = read_manifest(data)
            data = get_domain(self.domain).make_dataset(Path(data), manifest, self.preprocessing)
        elif isinstance(data, (np.ndarray, list, tuple)):
            data = torch.as_tensor(np.asarray(data), dtype=torch.float32)
        if isinstance(data, torch.Tensor):
            expected = self.meta.get("input_shape")
            if expected and list(data.shape[1:]) != list(expected):
                raise ConfigError(f"inputs of shape {tuple(data.shape)} do not fit this model: it reads items of shape "
                                  f"{tuple(expected)} (N, {', '.join(map(str, expected))}); pass a DATA_DIR, or arrays "
                                  "as the domain's dataset gives them")
            for start in range(0, len(data), batch_size):
                yield data[start:start + batch_size].float()
            return
        yield from DataLoader(data, batch_size=batch_size, shuffle=False)

    def _collect(self, data: Any, batch_size: int) -> list[BatchOutput]:
        return [self.run_batch(x) for x in self._batches(data, batch_size)]

    def embed(self, data: Any, batch_size: int = 256) -> np.ndarray:
        """Embeddings ``(N, D)`` of a DATA_DIR (every manifest row) or of inputs ``(N, *input_shape)``
        (dataset items: already preprocessed as the model's domain dataset gives them)."""
        return torch.cat([self.embed_batch(x) for x in self._batches(data, batch_size)]).numpy()

    def predict_proba(self, data: Any, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, C)`` (column c = ``classes[c]``) of a DATA_DIR or inputs."""
        if self.head is None:
            raise ConfigError("this is a pretrained encoder without a classifier; fine-tune it first (medssl.finetune)")
        return np.concatenate([b.proba for b in self._collect(data, batch_size)])

    def anomaly_score(self, data: Any, batch_size: int = 256) -> np.ndarray:
        """Anomaly scores ``(N,)`` (higher = more unusual) of a DATA_DIR or inputs."""
        if self.scorer is None:
            raise ConfigError("this model carries no fitted anomaly scorer; use a fine-tuned model, or "
                              "medssl.score(...), which fits the domain's anomaly recipe on a reference split")
        return np.concatenate([b.anomaly_score for b in self._collect(data, batch_size)])


def _build_head(ckpt: Checkpoint, n_inputs: int | None, path: Path) -> tuple[nn.Linear | None, list[str]]:
    head_state = ckpt.states.get("head")
    if not head_state:
        return None, []
    weight = head_state.get("weight")
    if weight is None or weight.ndim != 2 or (n_inputs is not None and weight.shape[1] != n_inputs):
        raise CheckpointError(
            f"{path} has a head that is not an nn.Linear({n_inputs}, n_classes) over its inputs; "
            "re-create the model with `medssl finetune`"
        )
    classes = [str(c) for c in ckpt.meta.get("classes", [])]
    if len(classes) != weight.shape[0]:
        raise CheckpointError(
            f"{path} has a head with {weight.shape[0]} outputs but meta['classes'] lists {len(classes)} "
            "labels; re-create the model with `medssl finetune`"
        )
    head = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in head_state)
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


def _load_knn(ckpt: Checkpoint) -> KnnMemory | None:
    """The labelled-embedding memory of a model fine-tuned with ``--mode knn`` (else ``None``)."""
    if KNN_PREFIX + "embeddings" not in ckpt.tensors or not isinstance(ckpt.meta.get("knn"), dict):
        return None
    return KnnMemory(ckpt.tensors[KNN_PREFIX + "embeddings"], ckpt.tensors[KNN_PREFIX + "labels"],
                     int(ckpt.meta["knn"]["k"]))


def load_model(path: str | Path, device: str | torch.device = "auto", expect_kind: str | None = None) -> Model:
    """Load any medssl model file (kind "model" or "encoder"; ``expect_kind`` insists on one).

    Raises ``CheckpointError`` for a file that is not a medssl file, was tampered with, or lacks
    what inference needs (domain, encoder weights that fit the registered encoder, a head that
    fits its inputs).
    """
    path = Path(path)
    if path.suffix == ".onnx":
        return _load_onnx_model(path, expect_kind)
    ckpt = load_checkpoint(path, expect_kind=expect_kind)
    meta = ckpt.meta
    if not meta.get("domain"):
        raise CheckpointError(f"{path} does not say which data domain it was trained on (meta['domain'])")
    if "encoder" not in ckpt.states:
        raise CheckpointError(f"{path} holds no encoder weights (states['encoder']); it cannot be used")
    encoder = build_encoder(meta, ckpt.states["encoder"])
    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    anomaly, few = _recipes(meta, ckpt.kind, path)
    head, classes = _build_head(ckpt, int(encoder.num_features) if few is None else None, path)
    scorer, scorer_name, scorer_kwargs = _load_scorer(ckpt)
    return Model(
        path=path,
        model_id=file_sha256(path),
        kind=ckpt.kind,
        meta=meta,
        encoder=InferenceEncoder(encoder, dev),  # batch-norm folded, channels-last on CPU: same embeddings, faster
        head=None if head is None else head.to(dev),
        classes=classes,
        anomaly_recipe=anomaly,
        few_label_recipe=few,
        scorer=scorer,
        scorer_name=scorer_name,
        scorer_kwargs=scorer_kwargs,
        knn=_load_knn(ckpt) if head is not None else None,
        device=dev,
    )


def _load_onnx_model(path: Path, expect_kind: str | None) -> Model:
    """An exported ``model.onnx`` with its sidecars (``medssl.models.onnx_bundle``): the encoder (and an
    embedding head) run in onnxruntime on the CPU, the scorer and other heads as on the torch path."""
    from medssl.models.onnx_bundle import onnx_model_id, read_onnx_bundle

    side, arrays, encoder = read_onnx_bundle(path)
    kind, meta = str(side["kind"]), dict(side["meta"])
    if expect_kind is not None and kind != expect_kind:
        raise CheckpointError(f"{path} was exported from a {kind!r} file, not a {expect_kind!r} one")
    ckpt = Checkpoint(kind=kind, meta=meta, states={"head": {k[5:]: v for k, v in arrays.items() if k.startswith("head/")}},
                      tensors={k: v for k, v in arrays.items() if not k.startswith("head/")})
    anomaly, few = _recipes(meta, kind, path)
    head, classes = _build_head(ckpt, encoder.num_features if few is None else None, path)
    scorer_spec = side.get("scorer")
    scorer = restore_scorer(scorer_spec["name"], dict(scorer_spec["kwargs"] or {}),
                            {k[7:]: v for k, v in arrays.items() if k.startswith("scorer/")}) if scorer_spec else None
    knn = KnnMemory(arrays["knn/embeddings"], arrays["knn/labels"], int(side["knn_k"])) if side.get("knn_k") else None
    return Model(path=path, model_id=onnx_model_id(path), kind=kind, meta=meta, encoder=encoder, head=head,
                 classes=classes, anomaly_recipe=anomaly, few_label_recipe=few, scorer=scorer,
                 scorer_name=None if not scorer_spec else str(scorer_spec["name"]),
                 scorer_kwargs={} if not scorer_spec else dict(scorer_spec["kwargs"] or {}), knn=knn)


def _recipes(meta: dict[str, Any], kind: str, path: Path) -> tuple[AnomalyRecipe, FewLabelRecipe | None]:
    """The anomaly recipe and (when the head reads its features) the few-label recipe a file names."""
    recipes = dict(meta.get("recipes") or {})
    try:
        # a fine-tuned file from before recipes existed scored its embeddings; an encoder file gets
        # its domain's recipe fitted at scoring time
        legacy = "embedding_knn" if kind == "model" and "recipes" not in meta else "auto"
        anomaly = anomaly_recipe(recipes.get("anomaly", legacy), str(meta["domain"]))
        head_input = str(meta.get("head_input", HEAD_INPUT_EMBEDDING))
        few = None if head_input == HEAD_INPUT_EMBEDDING else few_label_recipe(head_input, str(meta["domain"]))
    except Exception as exc:  # an unknown recipe name: written by a newer medssl
        raise CheckpointError(f"{path} names a recipe this medssl does not know ({exc})") from None
    return anomaly, few
