"""kNN distance scorer and ``knn_mean_distance``: exact brute force, or faiss IVF for large references."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medssl.anomaly.base import AnomalyScorer, register_scorer, tensor64
from medssl.anomaly.neighbours import EXACT_MAX, NeighbourIndex, exact_search
from medssl.errors import ConfigError, DataError


def knn_mean_distance(query: np.ndarray, reference: np.ndarray | NeighbourIndex, k: int, skip_self: bool = False,
                      reference32: torch.Tensor | None = None) -> np.ndarray:
    """Mean Euclidean distance ``(N,)`` float64 from each row of ``query`` ``(N, D)`` to its ``k``
    nearest rows of ``reference`` ``(M, D)`` (both float64; centre them on the reference mean).

    ``reference`` is a matrix (exact brute force, ``neighbours.exact_search``) or a
    ``NeighbourIndex`` (exact up to ``EXACT_MAX`` rows, faiss IVF candidates above). Either way the
    distances to the rows found are exact float64; the brute force equals scikit-learn's
    (``tests/test_scorers.py``), ``benchmarks/bench_knn_scale.py`` measures the index. ``skip_self``
    drops the nearest hit (the query itself when ``query`` is ``reference``: leave-one-out).
    ``reference32`` is ``reference`` as a float32 tensor, when the caller keeps one.
    """
    kk = k + 1 if skip_self else k
    if isinstance(reference, NeighbourIndex):
        dist, _ = reference.search_torch(query, kk)
    else:
        dist, _ = exact_search(query, reference, kk, reference32=reference32)
    if len(dist) == 0:
        return np.zeros(0)
    return (dist[:, 1:] if skip_self else dist).mean(dim=1).numpy()


@register_scorer
class KNNDistanceScorer(AnomalyScorer):
    """Mean Euclidean distance to the ``k`` nearest reference embeddings (``knn_mean_distance``).

    Reference scores are leave-one-out (each reference case's own row is excluded), so the
    percentiles of new cases and of reference cases are on the same footing.
    """

    name = "knn"

    def __init__(self, k: int = 10, normalize: str = "none", exact_max: int | None = None) -> None:
        super().__init__(normalize)
        if int(k) < 1:
            raise ConfigError(f"k must be a positive number of neighbours, got {k}")
        self.k = int(k)
        self.exact_max = EXACT_MAX if exact_max is None else int(exact_max)
        if self.exact_max < 0:
            raise ConfigError(f"exact_max must be a number of reference cases >= 0, got {exact_max}")
        self.reference_: np.ndarray | None = None
        self._center: np.ndarray | None = None
        self._neighbours: NeighbourIndex | None = None

    def _index(self) -> NeighbourIndex:
        """The reference centred on its mean (distances do not change, but float32 candidates keep
        their precision away from the origin), searched exactly up to ``exact_max`` rows, with
        faiss IVF above (``medssl.anomaly.neighbours``); rebuilt deterministically after a load."""
        if self._neighbours is None:
            self._center = self.reference_.mean(axis=0)
            self._neighbours = NeighbourIndex(self.reference_ - self._center, exact_max=self.exact_max)
        return self._neighbours

    def _fit(self, x: np.ndarray) -> np.ndarray:
        if len(x) <= self.k:
            raise DataError(f"kNN scorer with k={self.k} needs more than {self.k} reference cases, got {len(x)}")
        self.reference_ = x
        self._neighbours = None
        index = self._index()
        return knn_mean_distance(index.reference, index, self.k, skip_self=True)

    def _score(self, x: np.ndarray) -> np.ndarray:
        index = self._index()
        return knn_mean_distance(x - self._center, index, self.k)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"k": tensor64(self.k), "exact_max": tensor64(self.exact_max), "reference": tensor64(self.reference_)}

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "KNNDistanceScorer":
        exact_max = int(state["exact_max"].item()) if "exact_max" in state else None  # older files: default
        obj = cls(k=int(state["k"].item()), exact_max=exact_max)
        obj.reference_ = state["reference"].double().numpy()
        return obj
