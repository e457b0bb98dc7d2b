"""Reconstruction-error scorer (PCA by default, or a learned reconstruction function)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from medssl.anomaly.base import AnomalyScorer, register_scorer, tensor64
from medssl.errors import ConfigError, DataError


@register_scorer
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
            return {"uses_function": tensor64(1)}
        return {"uses_function": tensor64(0), "pca_mean": tensor64(self.pca_mean_), "components": tensor64(self.components_)}

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
