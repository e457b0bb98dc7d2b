"""kNN distance scorer and ``knn_mean_distance``, the exact brute-force kNN it runs on."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medssl.anomaly.base import AnomalyScorer, register_scorer, tensor64
from medssl.errors import ConfigError, DataError


def knn_mean_distance(query: np.ndarray, reference: np.ndarray, k: int, skip_self: bool = False,
                      reference32: torch.Tensor | None = None) -> np.ndarray:
    """Mean Euclidean distance ``(N,)`` float64 from each row of ``query`` ``(N, D)`` to its ``k``
    nearest rows of ``reference`` ``(M, D)`` (both float64; centre them on the reference mean).

    Exact brute force, fast: candidate neighbours from float32 ``|r|^2 - 2 q.r`` (the squared
    distance less the query's own ``|q|^2``, which does not change the order; one ``torch.addmm``)
    and ``torch.topk``; then the distances to
    those ``k`` are recomputed exactly in float64 (float32 alone would turn near-duplicates'
    rounding noise into distances of ~1e-6). Cheaper than a float64 brute force (scikit-learn's),
    with the same neighbours (``tests/test_scorers.py``); ``benchmarks/bench_score.py`` measures
    it as part of ``medssl score``. Query blocks keep memory bounded. ``skip_self`` drops the
    nearest hit (the query itself when ``query`` is ``reference``: leave-one-out). ``reference32`` is
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


@register_scorer
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
        return {"k": tensor64(self.k), "reference": tensor64(self.reference_)}

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "KNNDistanceScorer":
        obj = cls(k=int(state["k"].item()))
        obj.reference_ = state["reference"].double().numpy()
        return obj
