"""Anomaly scorers on embeddings, one per module; all share ``AnomalyScorer`` (``base``).

    scorer = create_scorer("knn", k=10).fit(reference)     # (N_ref, D), normal/unlabelled
    s = scorer.score(new)                                   # (N,), higher = more anomalous
    same = load_scorer("knn", scorer.state_dict())          # identical scores, no refit

Importing this package registers every built-in scorer in ``SCORERS`` (``list_scorers()``).
Domain-agnostic: scorers see only ``(N, D)`` matrices, never images, series or table columns.
"""

from medssl.anomaly.base import (
    NORMALIZATIONS,
    SCORERS,
    AnomalyScorer,
    ArrayLike,
    as_matrix,
    create_scorer,
    list_scorers,
    load_scorer,
)
from medssl.anomaly.ecod import ECODScorer
from medssl.anomaly.ensemble import EnsembleScorer
from medssl.anomaly.iforest import IsolationForestScorer
from medssl.anomaly.knn import KNNDistanceScorer, knn_mean_distance
from medssl.anomaly.mahalanobis import MahalanobisScorer
from medssl.anomaly.pseudo_label import PseudoLabelScorer
from medssl.anomaly.reconstruction import ReconstructionScorer

__all__ = [
    "NORMALIZATIONS",
    "SCORERS",
    "AnomalyScorer",
    "ArrayLike",
    "ECODScorer",
    "EnsembleScorer",
    "IsolationForestScorer",
    "KNNDistanceScorer",
    "MahalanobisScorer",
    "PseudoLabelScorer",
    "ReconstructionScorer",
    "as_matrix",
    "create_scorer",
    "knn_mean_distance",
    "list_scorers",
    "load_scorer",
]
