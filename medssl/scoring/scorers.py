"""Anomaly scorers on embeddings: kNN distance, Mahalanobis distance, reconstruction error,
ECOD tail probabilities, IsolationForest, self-training on pseudo-labels (pseudo_label), and a
rank-averaging ensemble of these.

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
from typing import Any, Callable, ClassVar, TypeVar

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


def _t(x: np.ndarray | float | int) -> torch.Tensor:
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
            "normalize": _t(NORMALIZATIONS.index(self.normalize)),
            "mean": _t(self.mean_),
            "scale": _t(self.scale_),
            "reference_scores": _t(self.reference_scores_),
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


def _register(cls: type[S]) -> type[S]:
    SCORERS.register(cls.name)(cls)
    return cls


def knn_mean_distance(query: np.ndarray, reference: np.ndarray, k: int, skip_self: bool = False,
                      reference32: torch.Tensor | None = None) -> np.ndarray:
    """Mean Euclidean distance ``(N,)`` float64 from each row of ``query`` ``(N, D)`` to its ``k``
    nearest rows of ``reference`` ``(M, D)`` (both float64; centre them on the reference mean).

    Exact brute force, fast: candidate neighbours from float32 ``|r|^2 - 2 q.r`` (the squared
    distance less the query's own ``|q|^2``, which does not change the order; one ``torch.addmm``)
    and ``torch.topk``; then the distances to
    those ``k`` are recomputed exactly in float64 (float32 alone would turn near-duplicates'
    rounding noise into distances of ~1e-6). About 2-3x faster than sklearn's float64 brute
    force on CPU. Query blocks keep memory bounded. ``skip_self`` drops the nearest hit (the
    query itself when ``query`` is ``reference``: leave-one-out). ``reference32`` is
    ``reference`` as a float32 tensor, when the caller keeps one.
    """
    ref64 = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float64))
    ref32 = reference32 if reference32 is not None else ref64.float()
    q64 = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float64))
    kk = k + 1 if skip_self else k
    step = max(1, min(4096, (1 << 24) // max(1, len(ref64))))
    out = []
    with torch.inference_mode():
        ref_sq = (ref32 * ref32).sum(dim=1).unsqueeze(0)  # (1, M)
        for start in range(0, len(q64), step):
            block64 = q64[start:start + step]
            block = block64.float()
            # |r|^2 - 2 q.r ranks the references of each query as |q - r|^2 does (|q|^2 is the same
            # along a row), so the row term is never added: one pass less over the (b, M) block
            sq = torch.addmm(ref_sq, block, ref32.T, alpha=-2.0)
            idx = torch.topk(sq, kk, dim=1, largest=False).indices  # (b, kk), nearest first
            exact = torch.linalg.vector_norm(ref64[idx] - block64[:, None, :], dim=2)  # (b, kk) float64
            exact = exact.sort(dim=1).values
            out.append((exact[:, 1:] if skip_self else exact).mean(dim=1))
    return torch.cat(out).numpy() if out else np.zeros(0)


@_register
class KNNDistanceScorer(AnomalyScorer):
    """Mean Euclidean distance to the ``k`` nearest reference embeddings (``knn_mean_distance``).

    Reference scores are leave-one-out (each reference case's own row is excluded), so the
    percentiles of new cases and of reference cases are on the same footing.
    """

    name = "knn"

    def __init__(self, k: int = 10, normalize: str = "none") -> None:
        super().__init__(normalize)
        if int(k) < 1:
            raise ConfigError(f"k must be a positive number of neighbours, got {k}")
        self.k = int(k)
        self.reference_: np.ndarray | None = None
        self._reference32: torch.Tensor | None = None
        self._center: np.ndarray | None = None
        self._centred: np.ndarray | None = None

    def _index(self) -> tuple[np.ndarray, torch.Tensor]:
        """The reference centred on its mean (float64, and float32 for the candidate search):
        distances do not change, but float32 keeps its precision away from the origin."""
        if self._reference32 is None:
            self._center = self.reference_.mean(axis=0)
            self._centred = self.reference_ - self._center
            self._reference32 = torch.from_numpy(np.ascontiguousarray(self._centred, dtype=np.float32))
        return self._centred, self._reference32

    def _fit(self, x: np.ndarray) -> np.ndarray:
        if len(x) <= self.k:
            raise DataError(f"kNN scorer with k={self.k} needs more than {self.k} reference cases, got {len(x)}")
        self.reference_ = x
        self._reference32 = None
        ref, ref32 = self._index()
        return knn_mean_distance(ref, ref, self.k, skip_self=True, reference32=ref32)

    def _score(self, x: np.ndarray) -> np.ndarray:
        ref, ref32 = self._index()
        return knn_mean_distance(x - self._center, ref, self.k, reference32=ref32)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"k": _t(self.k), "reference": _t(self.reference_)}

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "KNNDistanceScorer":
        obj = cls(k=int(state["k"].item()))
        obj.reference_ = state["reference"].double().numpy()
        return obj


@_register
class MahalanobisScorer(AnomalyScorer):
    """Squared Mahalanobis distance to the reference mean under a shrunk covariance.

    ``estimator="ledoit_wolf"`` (default, well-conditioned when D is large relative to N) or
    ``"empirical"`` (sklearn EmpiricalCovariance).
    """

    name = "mahalanobis"
    ESTIMATORS = ("ledoit_wolf", "empirical")

    def __init__(self, estimator: str = "ledoit_wolf", normalize: str = "none") -> None:
        super().__init__(normalize)
        if estimator not in self.ESTIMATORS:
            raise ConfigError(f"estimator must be one of {self.ESTIMATORS}, got {estimator!r}")
        self.estimator = estimator
        self.location_: np.ndarray | None = None
        self.precision_: np.ndarray | None = None

    def _fit(self, x: np.ndarray) -> np.ndarray:
        from sklearn.covariance import EmpiricalCovariance, LedoitWolf  # here: sklearn costs ~1 s at start-up

        cov = LedoitWolf() if self.estimator == "ledoit_wolf" else EmpiricalCovariance()
        cov.fit(x)
        self.location_ = cov.location_
        self.precision_ = cov.get_precision()
        return self._score(x)

    def _score(self, x: np.ndarray) -> np.ndarray:
        d = x - self.location_
        return np.einsum("nd,de,ne->n", d, self.precision_, d)

    def _state(self) -> dict[str, torch.Tensor]:
        return {
            "estimator": _t(self.ESTIMATORS.index(self.estimator)),
            "location": _t(self.location_),
            "precision": _t(self.precision_),
        }

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "MahalanobisScorer":
        obj = cls(estimator=cls.ESTIMATORS[int(state["estimator"].item())])
        obj.location_ = state["location"].double().numpy()
        obj.precision_ = state["precision"].double().numpy()
        return obj


@_register
class ReconstructionScorer(AnomalyScorer):
    """Squared reconstruction error ``||x - r(x)||^2`` per row.

    By default ``r`` is a PCA fitted on the reference (``n_components``: an int, or a float in
    (0, 1) = fraction of variance kept). Pass ``reconstruct`` (a callable ``(N, D) -> (N, D)``
    on numpy arrays, e.g. an autoencoder or a VIME decoder) to use a learned reconstruction
    instead; it is not part of ``state_dict`` and must be passed again to ``from_state_dict``.
    """

    name = "reconstruction"

    def __init__(
        self,
        n_components: int | float = 0.9,
        normalize: str = "standard",
        reconstruct: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        super().__init__(normalize)
        if isinstance(n_components, float) and not 0 < n_components < 1:
            raise ConfigError(f"n_components as a float must be in (0, 1), got {n_components}")
        if isinstance(n_components, int) and n_components < 1:
            raise ConfigError(f"n_components must be >= 1, got {n_components}")
        self.n_components = n_components
        self.reconstruct = reconstruct
        self.pca_mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None  # (K, D), orthonormal rows

    def _rebuild(self, x: np.ndarray) -> np.ndarray:
        if self.reconstruct is not None:
            out = np.asarray(self.reconstruct(x), dtype=np.float64)
            if out.shape != x.shape:
                raise DataError(f"reconstruct returned shape {out.shape}, expected {x.shape}")
            return out
        z = (x - self.pca_mean_) @ self.components_.T
        return z @ self.components_ + self.pca_mean_

    def _fit(self, x: np.ndarray) -> np.ndarray:
        if self.reconstruct is None:
            n = self.n_components
            if isinstance(n, int):
                n = min(n, x.shape[1], len(x))
            from sklearn.decomposition import PCA

            pca = PCA(n_components=n, svd_solver="full").fit(x)
            self.pca_mean_ = pca.mean_
            self.components_ = pca.components_
        return self._score(x)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return ((x - self._rebuild(x)) ** 2).sum(axis=1)

    def _state(self) -> dict[str, torch.Tensor]:
        if self.reconstruct is not None:
            return {"uses_function": _t(1)}
        return {"uses_function": _t(0), "pca_mean": _t(self.pca_mean_), "components": _t(self.components_)}

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "ReconstructionScorer":
        reconstruct = kwargs.get("reconstruct")
        if int(state["uses_function"].item()) == 1 and reconstruct is None:
            raise DataError("this reconstruction scorer used a reconstruction function; pass reconstruct=...")
        obj = cls(reconstruct=reconstruct)
        if reconstruct is None:
            obj.pca_mean_ = state["pca_mean"].double().numpy()
            obj.components_ = state["components"].double().numpy()
            obj.n_components = int(obj.components_.shape[0])
        return obj


@_register
class ECODScorer(AnomalyScorer):
    """ECOD (Li et al. 2022): empirical-CDF tail probabilities per dimension, no hyperparameters.

    For each dimension ``j`` of the reference ``R`` (``n`` rows) and a query value ``x``:
    ``left = (#{R_j <= x} + 1) / (n + 1)`` and ``right = (#{R_j >= x} + 1) / (n + 1)`` (plus-one
    smoothing, so a value beyond every reference value gets ``1 / (n + 1)``, never 0). The score
    is ``max(sum_j -log left_j, sum_j -log right_j, sum_j -log auto_j)`` where ``auto_j`` is the
    left tail for dimensions whose reference skewness is negative and the right tail otherwise.
    Scores are additive over dimensions, so a case extreme in several features ranks first.

    ``tail="skew"`` (skewness-weighted tails) scores ``sum_j |skew_j|^skew_power * (-log auto_j)``
    instead: only the tail a dimension's reference skewness points to counts, weighted by how
    skewed that dimension is. A one-sided tail population in the reference (e.g. a few percent of
    unlabelled frauds pulling some features one way) makes those dimensions skewed, so evidence in
    them weighs more, while symmetric dimensions (``skew = 0``) are ignored. No labels are used;
    ``skew_power=2`` was chosen on a labelled validation part of the reference halves of the
    transaction benchmark (``benchmarks/anomaly_transactions.py``), never on its evaluation half.
    """

    name = "ecod"
    TAILS = ("ecod", "skew")

    def __init__(self, normalize: str = "none", tail: str = "ecod", skew_power: float = 2.0) -> None:
        super().__init__(normalize)
        if tail not in self.TAILS:
            raise ConfigError(f"tail must be one of {self.TAILS}, got {tail!r}")
        if not float(skew_power) >= 0:
            raise ConfigError(f"skew_power must be >= 0, got {skew_power}")
        self.tail, self.skew_power = tail, float(skew_power)
        self.sorted_: np.ndarray | None = None  # (n, D) reference, each column sorted
        self.left_skewed_: np.ndarray | None = None  # (D,) bool: skewness < 0
        self.weights_: np.ndarray | None = None  # (D,) |skewness|^skew_power (tail="skew" only)

    def _fit(self, x: np.ndarray) -> np.ndarray:
        self.sorted_ = np.sort(x, axis=0)
        centred = x - x.mean(axis=0)
        m2, m3 = (centred**2).mean(axis=0), (centred**3).mean(axis=0)
        # sign of the sample skewness m3 / m2^1.5 = sign of m3 (constant columns: m3 = 0 -> right tail)
        self.left_skewed_ = m3 < 0
        if self.tail == "skew":
            ok = m2 > 1e-24
            skewness = np.where(ok, m3 / np.where(ok, m2, 1.0) ** 1.5, 0.0)
            self.weights_ = np.abs(skewness) ** self.skew_power
        return self._score(x)

    def _score(self, x: np.ndarray) -> np.ndarray:
        n, d = self.sorted_.shape
        left = np.empty_like(x)
        right = np.empty_like(x)
        for j in range(d):
            col = self.sorted_[:, j]
            left[:, j] = np.searchsorted(col, x[:, j], side="right")
            right[:, j] = n - np.searchsorted(col, x[:, j], side="left")
        o_left = -np.log((left + 1.0) / (n + 1.0))
        o_right = -np.log((right + 1.0) / (n + 1.0))
        o_auto = np.where(self.left_skewed_, o_left, o_right)
        if self.tail == "skew":
            return o_auto @ self.weights_
        return np.maximum.reduce([o_left.sum(axis=1), o_right.sum(axis=1), o_auto.sum(axis=1)])

    def _state(self) -> dict[str, torch.Tensor]:
        state = {"sorted": _t(self.sorted_), "left_skewed": _t(self.left_skewed_.astype(np.float64))}
        if self.tail == "skew":  # states without these keys (older ones too) are plain ECOD
            state.update({"tail": _t(self.TAILS.index(self.tail)), "skew_power": _t(self.skew_power),
                          "weights": _t(self.weights_)})
        return state

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "ECODScorer":
        tail = cls.TAILS[int(state["tail"].item())] if "tail" in state else "ecod"
        power = float(state["skew_power"].item()) if "skew_power" in state else 2.0
        obj = cls(tail=tail, skew_power=power)
        obj.sorted_ = state["sorted"].double().numpy()
        obj.left_skewed_ = state["left_skewed"].numpy() > 0.5
        if tail == "skew":
            obj.weights_ = state["weights"].double().numpy()
        return obj


@_register
class IsolationForestScorer(AnomalyScorer):
    """scikit-learn's IsolationForest fitted on the reference; score = ``-score_samples`` (higher =
    more anomalous). The state holds the reference and the hyperparameters; loading refits the
    forest with the same ``random_state`` on the same rows, which rebuilds identical trees."""

    name = "iforest"

    def __init__(self, n_estimators: int = 100, random_state: int = 0, normalize: str = "none") -> None:
        super().__init__(normalize)
        if int(n_estimators) < 1:
            raise ConfigError(f"n_estimators must be a positive number of trees, got {n_estimators}")
        self.n_estimators, self.random_state = int(n_estimators), int(random_state)
        self.reference_: np.ndarray | None = None
        self._forest: "IsolationForest | None" = None

    def _forest_fit(self) -> "IsolationForest":
        if self._forest is None:
            from sklearn.ensemble import IsolationForest

            self._forest = IsolationForest(n_estimators=self.n_estimators, random_state=self.random_state,
                                           n_jobs=1).fit(self.reference_)
        return self._forest

    def _fit(self, x: np.ndarray) -> np.ndarray:
        self.reference_, self._forest = x, None
        return self._score(x)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return -self._forest_fit().score_samples(x)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"n_estimators": _t(self.n_estimators), "random_state": _t(self.random_state),
                "reference": _t(self.reference_)}

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "IsolationForestScorer":
        obj = cls(n_estimators=int(state["n_estimators"].item()), random_state=int(state["random_state"].item()))
        obj.reference_ = state["reference"].double().numpy()
        return obj


@_register
class PseudoLabelScorer(AnomalyScorer):
    """Self-training on the unlabelled reference: a linear direction from its own most anomalous cases.

    A ``base`` scorer (default: ECOD with skewness-weighted tails) is fitted on the reference and
    ranks it; its top ``contamination`` share become pseudo-anomalies (label 1) and its lowest
    ``normal_quantile`` share pseudo-normals (label 0); the cases in between are left out. An
    L2-regularised logistic regression (inverse strength ``C``, lbfgs) on the prepared features
    (``normalize="standard"`` by default) separates the two, and the score of a case is its
    log-odds ``x . coef + intercept``. No labels are used.

    Why: when anomalies form a one-sided group (e.g. a few percent of unlabelled frauds that share
    a pattern), the base scorer's top cases are mostly that group, and the classifier learns the
    direction that separates it from normal cases, weighting every feature jointly instead of
    adding per-feature tail evidence. The limit is the same: an anomaly *unlike* the reference's
    own top cases (e.g. extreme in the opposite direction) can score low, so this scorer is meant
    for data whose anomalies resemble the reference's most anomalous part, not as a general
    outlier detector (rank-average it with its base in an ``ensemble`` for that).
    ``contamination=0.05`` and ``C=0.1`` were chosen on a labelled validation part of the
    reference halves of ``benchmarks/anomaly_transactions.py``, never on its evaluation half.
    Only the linear model is kept after ``fit`` (the base scorer is dropped); the state holds the
    coefficients, the intercept and the hyperparameters.
    """

    name = "pseudo_label"

    def __init__(self, base: tuple[str, dict[str, Any]] = ("ecod", {"tail": "skew", "skew_power": 2.0}),
                 contamination: float = 0.05, normal_quantile: float = 0.5, C: float = 0.1,
                 normalize: str = "standard") -> None:
        super().__init__(normalize)
        if not 0.0 < float(contamination) < 0.5:
            raise ConfigError(f"contamination (share of pseudo-anomalies) must be in (0, 0.5), got {contamination}")
        if not 0.0 < float(normal_quantile) <= 1.0 - float(contamination):
            raise ConfigError(f"normal_quantile must be in (0, 1 - contamination], got {normal_quantile}")
        if not float(C) > 0.0:
            raise ConfigError(f"C (inverse regularisation strength) must be > 0, got {C}")
        base_name, base_kw = base
        if base_name == self.name:
            raise ConfigError("a pseudo_label scorer's base cannot be another pseudo_label scorer")
        self.base = (str(base_name), dict(base_kw))
        create_scorer(self.base[0], **self.base[1])  # unknown base name or options fail now, not in fit
        self.contamination, self.normal_quantile, self.C = float(contamination), float(normal_quantile), float(C)
        self.coef_: np.ndarray | None = None  # (D,)
        self.intercept_: float = 0.0

    def _fit(self, x: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        n = len(x)
        base_scores = create_scorer(self.base[0], **self.base[1]).fit(x).score(x)
        order = np.argsort(base_scores, kind="stable")  # ascending: most normal first
        n_hi = max(1, int(round(self.contamination * n)))
        n_lo = min(max(1, int(round(self.normal_quantile * n))), n - n_hi)
        labels = np.concatenate([np.zeros(n_lo, dtype=int), np.ones(n_hi, dtype=int)])
        rows = np.concatenate([order[:n_lo], order[n - n_hi:]])
        clf = LogisticRegression(C=self.C, max_iter=2000).fit(x[rows], labels)
        self.coef_, self.intercept_ = clf.coef_[0].astype(np.float64), float(clf.intercept_[0])
        return self._score(x)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef_ + self.intercept_

    def _state(self) -> dict[str, torch.Tensor]:
        return {"coef": _t(self.coef_), "intercept": _t(self.intercept_), "contamination": _t(self.contamination),
                "normal_quantile": _t(self.normal_quantile), "C": _t(self.C),
                "base_name": torch.tensor(list(self.base[0].encode()), dtype=torch.float64)}

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "PseudoLabelScorer":
        obj = cls.__new__(cls)
        AnomalyScorer.__init__(obj)
        # the base's options are not kept (only its name): it is not needed to score
        obj.base = (bytes(int(v) for v in state["base_name"].tolist()).decode(), {})
        obj.contamination = float(state["contamination"].item())
        obj.normal_quantile = float(state["normal_quantile"].item())
        obj.C = float(state["C"].item())
        obj.coef_ = state["coef"].double().numpy()
        obj.intercept_ = float(state["intercept"].item())
        return obj


@_register
class EnsembleScorer(AnomalyScorer):
    """Rank average of several scorers fitted on the same matrix.

    ``members``: ``[(name, kwargs), ...]`` (default: ECOD, kNN k=10 on standardised features,
    IsolationForest). A case's ensemble score is the mean over members of its percentile among
    that member's reference scores (0-100), so members on different scales weigh the same and a
    single case can be scored on its own. ``columns`` optionally restricts member ``i`` to the
    column range ``[start, stop)`` (e.g. raw features vs. embedding of ``[raw | embedding]``).
    """

    name = "ensemble"
    DEFAULT_MEMBERS: ClassVar[tuple[tuple[str, dict[str, Any]], ...]] = (
        ("ecod", {}), ("knn", {"k": 10, "normalize": "standard"}), ("iforest", {}))

    def __init__(self, members: list[tuple[str, dict[str, Any]]] | None = None,
                 columns: list[tuple[int, int] | None] | None = None, normalize: str = "none") -> None:
        super().__init__(normalize)
        specs = list(members) if members is not None else list(self.DEFAULT_MEMBERS)
        if not specs:
            raise ConfigError("an ensemble scorer needs at least one member, e.g. [('ecod', {}), ('knn', {'k': 10})]")
        if any(name == self.name for name, _ in specs):
            raise ConfigError("an ensemble cannot contain another ensemble")
        self.columns = list(columns) if columns is not None else [None] * len(specs)
        if len(self.columns) != len(specs):
            raise ConfigError(f"columns has {len(self.columns)} entries for {len(specs)} members; give one per member")
        self.members = [create_scorer(name, **dict(kw)) for name, kw in specs]

    def _part(self, i: int, x: np.ndarray) -> np.ndarray:
        cols = self.columns[i]
        return x if cols is None else x[:, int(cols[0]):int(cols[1])]

    def _fit(self, x: np.ndarray) -> np.ndarray:
        for i, member in enumerate(self.members):
            member.fit(self._part(i, x))
        return self._score(x)

    def _score(self, x: np.ndarray) -> np.ndarray:
        ranks = [m.percentile(m.score(self._part(i, x))) for i, m in enumerate(self.members)]
        return np.mean(ranks, axis=0)

    def _state(self) -> dict[str, torch.Tensor]:
        names = ",".join(m.name for m in self.members).encode()
        cols = [(-1, -1) if c is None else (int(c[0]), int(c[1])) for c in self.columns]
        state = {"member_names": torch.tensor(list(names), dtype=torch.float64), "columns": _t(np.array(cols))}
        for i, m in enumerate(self.members):
            state.update({f"m{i}.{k}": v for k, v in m.state_dict().items()})
        return state

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "EnsembleScorer":
        names = bytes(int(v) for v in state["member_names"].tolist()).decode().split(",")
        obj = cls.__new__(cls)
        AnomalyScorer.__init__(obj)
        obj.columns = [None if a < 0 else (int(a), int(b)) for a, b in state["columns"].long().tolist()]
        obj.members = []
        for i, name in enumerate(names):
            sub = {k.removeprefix(f"m{i}."): v for k, v in state.items() if k.startswith(f"m{i}.")}
            obj.members.append(load_scorer(name, sub, **kwargs))
        return obj


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
