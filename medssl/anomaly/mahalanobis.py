"""Mahalanobis distance scorer (Ledoit-Wolf or empirical covariance)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medssl.anomaly.base import AnomalyScorer, register_scorer, tensor64
from medssl.errors import ConfigError


@register_scorer
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
            "estimator": tensor64(self.ESTIMATORS.index(self.estimator)),
            "location": tensor64(self.location_),
            "precision": tensor64(self.precision_),
        }

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "MahalanobisScorer":
        obj = cls(estimator=cls.ESTIMATORS[int(state["estimator"].item())])
        obj.location_ = state["location"].double().numpy()
        obj.precision_ = state["precision"].double().numpy()
        return obj
