"""IsolationForest scorer (scikit-learn)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medssl.anomaly.base import AnomalyScorer, register_scorer, tensor64
from medssl.errors import ConfigError


@register_scorer
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
        return {"n_estimators": tensor64(self.n_estimators), "random_state": tensor64(self.random_state),
                "reference": tensor64(self.reference_)}

    @classmethod
    def _from_state(cls, state: dict[str, torch.Tensor], **kwargs: Any) -> "IsolationForestScorer":
        obj = cls(n_estimators=int(state["n_estimators"].item()), random_state=int(state["random_state"].item()))
        obj.reference_ = state["reference"].double().numpy()
        return obj
