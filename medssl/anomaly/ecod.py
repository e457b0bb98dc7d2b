"""ECOD scorer: empirical-CDF tail probabilities, optionally skewness-weighted."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medssl.anomaly.base import AnomalyScorer, register_scorer, tensor64
from medssl.errors import ConfigError


@register_scorer
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
    them weighs more, while symmetric dimensions (``skew = 0``) are ignored. No labels are used.
    The default ``skew_power=2`` comes from ``benchmarks/_select_anomaly_transactions.py``.
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
        state = {"sorted": tensor64(self.sorted_), "left_skewed": tensor64(self.left_skewed_.astype(np.float64))}
        if self.tail == "skew":  # states without these keys (older ones too) are plain ECOD
            state.update({"tail": tensor64(self.TAILS.index(self.tail)), "skew_power": tensor64(self.skew_power),
                          "weights": tensor64(self.weights_)})
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
