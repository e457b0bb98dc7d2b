"""Pseudo-label scorer: self-training on the reference's own most anomalous cases."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medssl.anomaly.base import AnomalyScorer, create_scorer, register_scorer, tensor64
from medssl.errors import ConfigError


@register_scorer
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
    The defaults ``contamination=0.05`` and ``C=0.1`` come from
    ``benchmarks/_select_anomaly_transactions.py``.
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
        return {"coef": tensor64(self.coef_), "intercept": tensor64(self.intercept_), "contamination": tensor64(self.contamination),
                "normal_quantile": tensor64(self.normal_quantile), "C": tensor64(self.C),
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
