"""Ensemble scorer: rank average of several scorers."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from medssl.anomaly.base import AnomalyScorer, create_scorer, load_scorer, register_scorer, tensor64
from medssl.errors import ConfigError


@register_scorer
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
        state = {"member_names": torch.tensor(list(names), dtype=torch.float64), "columns": tensor64(np.array(cols))}
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
