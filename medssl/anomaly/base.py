"""The anomaly scorer base class, input checks and the scorer registry.

Anomaly scorers on embeddings: kNN distance, Mahalanobis distance, reconstruction error,
ECOD tail probabilities, IsolationForest, self-training on pseudo-labels (pseudo_label), and a
rank-averaging ensemble of these (one module each in ``medssl.anomaly``).

Domain-agnostic: a scorer sees only an ``(N, D)`` matrix of embeddings (numpy or torch), never
images, series or table columns. Every scorer has the same face::

    scorer = create_scorer("knn", k=10).fit(reference)     # reference: (N_ref, D), normal/unlabeled
    s = scorer.score(new)                                   # (N,) float64, higher = more anomalous
    p = scorer.percentile(s)                                # (N,) in [0, 100]
    tensors = scorer.state_dict()                           # dict[str, torch.Tensor]
    same = load_scorer("knn", tensors)                      # identical scores, no refit

``percentile`` is calibrated against the scores of the reference set itself, computed during
``fit`` (leave-one-out for kNN so a reference point is not its own neighbour): a percentile of
99 means the case is stranger than 99 % of the reference cases.

``state_dict`` holds everything needed to rebuild the scorer (statistics *and* hyperparameters
as tensors), so a batch scoring job can store it in a checkpoint's ``tensors`` (prefix the keys,
e.g. ``"scorer.reference"``) and its name in ``meta`` (``meta["scorer"] = scorer.name``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from medssl.errors import ConfigError, DataError
from medssl.registry import Registry

ArrayLike = np.ndarray | torch.Tensor
S = TypeVar("S", bound="AnomalyScorer")

NORMALIZATIONS = ("none", "standard", "l2")


def as_matrix(embeddings: ArrayLike, what: str = "embeddings") -> np.ndarray:
    """``embeddings`` as a finite float64 numpy matrix ``(N, D)``; raises ``DataError`` otherwise."""
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().cpu().double().numpy()
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"{what} must be a 2-D matrix (N cases, D features); got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise DataError(
            f"{what} hold NaN or infinite values in {bad} row(s); the encoder output is broken "
            "(check the input preprocessing or retrain)"
        )
    return x


def tensor64(x: np.ndarray | float | int) -> torch.Tensor:
    """``x`` as a float64 tensor (scorer states hold everything as float64)."""
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


class AnomalyScorer(ABC):
    """Base class: subclasses implement ``_fit``, ``_score``, ``_state`` and ``_from_state``."""

    name: ClassVar[str] = ""

    def __init__(self, normalize: str = "none") -> None:
        if normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.normalize = normalize
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.reference_scores_: np.ndarray | None = None  # sorted ascending

    # -- public interface -------------------------------------------------------------------
    def fit(self: S, embeddings: ArrayLike) -> S:
        """Learn the reference statistics from ``embeddings`` ``(N, D)`` and calibrate percentiles."""
        x = as_matrix(embeddings, "reference embeddings")
        if len(x) < 2:
            raise DataError(f"a {self.name} scorer needs at least 2 reference cases, got {len(x)}")
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        ref_scores = self._fit(self._prepare(x))
        self.reference_scores_ = np.sort(np.asarray(ref_scores, dtype=np.float64))
        return self

    def score(self, embeddings: ArrayLike) -> np.ndarray:
        """Anomaly score per row ``(N,)``: higher = more anomalous."""
        self._check_fitted()
        x = as_matrix(embeddings)
        if x.shape[1] != len(self.mean_):
            raise DataError(
                f"embeddings have {x.shape[1]} features but the scorer was fitted on {len(self.mean_)}; "
                "score with the same encoder that produced the reference embeddings"
            )
        return self._score(self._prepare(x))

    def percentile(self, scores: ArrayLike) -> np.ndarray:
        """Percent of reference cases whose score is <= each score: ``(N,)`` in [0, 100]."""
        self._check_fitted()
        s = np.asarray(scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
        ref = self.reference_scores_
        return 100.0 * np.searchsorted(ref, s.reshape(-1), side="right") / len(ref)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to rebuild this scorer, as float64 tensors."""
        self._check_fitted()
        state = {
            "normalize": tensor64(NORMALIZATIONS.index(self.normalize)),
            "mean": tensor64(self.mean_),
            "scale": tensor64(self.scale_),
            "reference_scores": tensor64(self.reference_scores_),
        }
        state.update(self._state())
        return state

    @classmethod
    def from_state_dict(cls: type[S], state: dict[str, torch.Tensor], **kwargs: Any) -> S:
        """Rebuild a fitted scorer from ``state_dict()`` output (no refit, identical scores)."""
        missing = [k for k in ("normalize", "mean", "scale", "reference_scores") if k not in state]
        if missing:
            raise DataError(f"{cls.name} scorer state lacks {missing}; it was not written by state_dict()")
        obj = cls._from_state(state, **kwargs)
        obj.normalize = NORMALIZATIONS[int(state["normalize"].item())]
        obj.mean_ = state["mean"].double().numpy()
        obj.scale_ = state["scale"].double().numpy()
        obj.reference_scores_ = state["reference_scores"].double().numpy()
        return obj

    # -- helpers ----------------------------------------------------------------------------
    def _prepare(self, x: np.ndarray) -> np.ndarray:
        if self.normalize == "standard":
            return (x - self.mean_) / self.scale_
        if self.normalize == "l2":
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def _check_fitted(self) -> None:
        if self.reference_scores_ is None:
            raise DataError(f"the {self.name} scorer is not fitted; call fit(reference_embeddings) first")

    @abstractmethod
    def _fit(self, x: np.ndarray) -> np.ndarray:
        """Fit on prepared reference ``x`` and return the reference's own scores ``(N,)``."""

    @abstractmethod
    def _score(self, x: np.ndarray) -> np.ndarray:
        """Scores ``(N,)`` of prepared ``x``."""

    @abstractmethod
    def _state(self) -> dict[str, torch.Tensor]:
        """Subclass statistics and hyperparameters as tensors."""

    @classmethod
    @abstractmethod
    def _from_state(cls: type[S], state: dict[str, torch.Tensor], **kwargs: Any) -> S:
        """A new instance holding the subclass part of ``state``."""


SCORERS: Registry[AnomalyScorer] = Registry("anomaly scorer")


def register_scorer(cls: type[S]) -> type[S]:
    """Class decorator: register ``cls`` in ``SCORERS`` under ``cls.name``."""
    SCORERS.register(cls.name)(cls)
    return cls


def create_scorer(name: str, **kwargs: Any) -> AnomalyScorer:
    """An unfitted scorer: ``"knn"`` (k, normalize), ``"mahalanobis"`` (estimator, normalize),
    ``"reconstruction"`` (n_components, normalize, reconstruct), ``"ecod"`` (normalize, tail, skew_power),
    ``"iforest"`` (n_estimators, random_state, normalize), ``"pseudo_label"`` (base, contamination,
    normal_quantile, C, normalize), ``"ensemble"`` (members, columns)."""
    return SCORERS.create(name, **kwargs)


def load_scorer(name: str, state: dict[str, torch.Tensor], **kwargs: Any) -> AnomalyScorer:
    """A fitted scorer rebuilt from ``state`` (the output of ``state_dict()``)."""
    return SCORERS.get(name).from_state_dict(state, **kwargs)  # type: ignore[attr-defined]


def list_scorers() -> list[str]:
    """Names of every registered scorer."""
    return SCORERS.names()
