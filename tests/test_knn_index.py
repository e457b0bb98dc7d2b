"""NeighbourIndex: exact below its threshold (as the brute force always was), faiss IVF above it
with recall@10 >= 0.95, deterministic; the kNN scorer and the similar-case search use it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits
from torch import nn

from medssl.anomaly import KNNDistanceScorer, knn_mean_distance
from medssl.anomaly.neighbours import EXACT_MAX, NeighbourIndex, exact_search
from medssl.checkpoints import load_checkpoint, save_checkpoint
from medssl.errors import ConfigError
from medssl.models.model import restore_scorer
from medssl.models.model_file import SCORER_PREFIX, model_checkpoint
from medssl.review.embeddings import nearest_cases


def _digits() -> np.ndarray:
    """Real data: the 1,797 8x8 handwritten digits of scikit-learn, ``(1797, 64)`` float64."""
    return load_digits().data.astype(np.float64)


def _clustered(n: int, seed: int, d: int = 32) -> np.ndarray:
    """``(n, d)`` embeddings shaped like an encoder's: 60 clusters in 8-D, mapped to d, plus noise."""
    base = np.random.default_rng(0)
    centres, mixing = base.normal(size=(60, 8)) * 3.0, base.normal(size=(8, d)) / np.sqrt(8)
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, 60, n)] + rng.normal(size=(n, 8))) @ mixing + rng.normal(size=(n, d))


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, exact)]))


def test_exact_below_threshold_equals_brute_force_on_real_embeddings() -> None:
    digits = _digits()
    ref, query = digits[:1500] - digits[:1500].mean(0), digits[1500:] - digits[:1500].mean(0)
    index = NeighbourIndex(ref)
    assert not index.approximate and len(ref) <= EXACT_MAX
    dist, idx = index.search(query, 10)
    full = cdist(query, ref)
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :10], rtol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(full, idx, 1), dist, rtol=1e-12)  # rows match distances
    # the scorer through the index is bitwise the brute force on the matrix
    np.testing.assert_array_equal(knn_mean_distance(query, index, 10), knn_mean_distance(query, ref, 10))
    scorer = KNNDistanceScorer(k=10).fit(digits[:1500])
    np.testing.assert_allclose(scorer.score(digits[1500:]), np.sort(full, axis=1)[:, :10].mean(1), rtol=1e-9)


def test_above_threshold_faiss_recall_at_10_and_exact_distances() -> None:
    ref, query = _clustered(4000, seed=1), _clustered(300, seed=2)
    index = NeighbourIndex(ref, exact_max=1000)
    assert index.approximate and index._faiss is not None
    dist, idx = index.search(query, 10)
    exact_dist, exact_idx = exact_search(query, ref, 10)
    assert _recall(idx, exact_idx.numpy()) >= 0.95
    # distances of the rows found are exact float64, nearest first
    np.testing.assert_allclose(dist, np.linalg.norm(ref[idx] - query[:, None, :], axis=2), rtol=1e-12)
    assert (np.diff(dist, axis=1) >= 0).all() and (dist >= exact_dist.numpy() - 1e-12).all()
    # deterministic: a second build answers the same
    again = NeighbourIndex(ref, exact_max=1000).search(query, 10)
    np.testing.assert_array_equal(again[1], idx)
    np.testing.assert_array_equal(again[0], dist)


def test_scorer_above_threshold_close_to_exact_and_model_file_roundtrip(tmp_path) -> None:
    ref, new = _clustered(3000, seed=3), _clustered(200, seed=4)
    approx = KNNDistanceScorer(k=10, exact_max=1000).fit(ref)
    exact = KNNDistanceScorer(k=10).fit(ref)
    assert approx._index().approximate and not exact._index().approximate
    # approximate neighbours can only be farther: scores >= exact, and within a hair of it
    s_approx, s_exact = approx.score(new), exact.score(new)
    assert (s_approx >= s_exact - 1e-12).all() and np.median(s_approx / s_exact - 1) < 1e-3
    np.testing.assert_allclose(approx.reference_scores_, exact.reference_scores_, rtol=2e-2)
    ckpt = model_checkpoint(nn.Linear(32, 4), nn.Linear(4, 2),
                            {"encoder": {"name": "tabular_mlp", "kwargs": {}}, "classes": ["a", "b"]},
                            scorer=approx, scorer_spec={"name": "knn", "kwargs": {"k": 10}})
    back_ck = load_checkpoint(save_checkpoint(tmp_path / "model.pt", ckpt))
    state = {k[len(SCORER_PREFIX):]: v for k, v in back_ck.tensors.items() if k.startswith(SCORER_PREFIX)}
    back = restore_scorer("knn", {"k": 10}, state)
    assert back.exact_max == 1000 and back._index().approximate
    np.testing.assert_array_equal(back.score(new), s_approx)
    np.testing.assert_array_equal(back.percentile(back.score(new)), approx.percentile(s_approx))


def test_scorer_state_without_exact_max_loads_with_the_default() -> None:
    scorer = KNNDistanceScorer(k=3).fit(_clustered(100, seed=5))
    state = {k: v for k, v in scorer.state_dict().items() if k != "exact_max"}  # a file from before
    back = KNNDistanceScorer.from_state_dict(state)
    assert back.exact_max == EXACT_MAX
    np.testing.assert_array_equal(back.score(_clustered(20, seed=6)), scorer.score(_clustered(20, seed=6)))
    with pytest.raises(ConfigError, match="exact_max"):
        KNNDistanceScorer(exact_max=-1)


def _nearest_reference(query: str, ids: list[str], matrix: np.ndarray, candidates: set[str], k: int) -> list[tuple[str, float]]:
    """The similar-case search as written before the index (all rows normalised, stable sort)."""
    norms = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    pool = [c for c in candidates if c in ids and c != query]
    dist = 1.0 - norms[[ids.index(c) for c in pool]] @ norms[ids.index(query)]
    order = np.argsort(dist, kind="stable")[:k]
    return [(pool[i], float(dist[i])) for i in order]


def test_similar_cases_unchanged_below_threshold_and_faiss_above() -> None:
    matrix = _digits().astype(np.float32)
    ids = [f"c{i}" for i in range(len(matrix))]
    candidates = set(ids[::2])
    for query in ["c1", "c10", "c777"]:
        got = nearest_cases(query, ids, matrix, candidates, k=5)
        assert list(zip(got["case_id"], got["distance"])) == _nearest_reference(query, ids, matrix, candidates, 5)
    # above a (lowered) threshold: faiss over the candidates only; the same cases for nearly all queries
    emb = _clustered(3000, seed=7).astype(np.float32)
    ids = [f"e{i}" for i in range(len(emb))]
    candidates = set(ids[:2500])
    hits = []
    for q in ids[2500:2600]:
        got = nearest_cases(q, ids, emb, candidates, k=10, exact_max=1000)
        want = _nearest_reference(q, ids, emb, candidates, 10)
        assert set(got["case_id"]) <= candidates and got["distance"].is_monotonic_increasing
        hits.append(len(set(got["case_id"]) & {c for c, _ in want}) / 10)
    assert np.mean(hits) >= 0.95
