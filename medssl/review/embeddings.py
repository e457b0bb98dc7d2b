"""Embeddings written by ``medssl score --embeddings``: nearest reviewed cases and a 2-D map.

File: Parquet with ``case_id`` and ``embedding`` (a fixed-size list of float32, one per case).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from medssl.anomaly.neighbours import EXACT_MAX, NeighbourIndex
from medssl.errors import DataError


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(case_ids, X)`` with ``X`` float32 ``(N, D)``; ``DataError`` for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"embeddings file {path} does not exist; write it with `medssl score ... --embeddings {path}`")
    try:
        df = pd.read_parquet(path, columns=["case_id", "embedding"])
    except Exception as exc:  # pyarrow raises many types; a missing column is one of them
        raise DataError(f"{path} is not an embeddings file with case_id and embedding columns ({exc})") from None
    if df.empty:
        raise DataError(f"{path} holds no embeddings")
    try:
        matrix = np.stack([np.asarray(v, dtype=np.float32) for v in df["embedding"]])
    except (ValueError, TypeError) as exc:  # rows of different lengths, or values that are not numbers
        raise DataError(f"{path}: the embeddings are not one fixed-length vector of numbers per case ({exc}); "
                        "write the file again with `medssl score ... --embeddings`") from None
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} of {len(matrix)} embeddings hold NaN or infinite values; "
                        "write the file again with `medssl score ... --embeddings`")
    return df["case_id"].astype(str).tolist(), matrix


def nearest_cases(query: str, case_ids: list[str], matrix: np.ndarray, candidates: set[str], k: int = 5,
                  exact_max: int | None = None) -> pd.DataFrame:
    """The ``k`` cases of ``candidates`` closest to ``query`` by cosine distance.

    ``matrix`` ``(N, D)`` rows follow ``case_ids``. Columns: case_id, distance (0 = same direction).
    Exact up to ``exact_max`` (default ``EXACT_MAX``) cases or candidates; above, the candidates are searched in a faiss
    IVF index of the L2-normalised rows (``NeighbourIndex``; Euclidean order on unit vectors is
    cosine order), built once per ``matrix`` object and kept for the next call; the distances of
    the cases found are computed exactly either way.
    """
    index = {c: i for i, c in enumerate(case_ids)}
    if query not in index:
        return pd.DataFrame(columns=["case_id", "distance"])
    pool = [c for c in candidates if c in index and c != query]
    if not pool:
        return pd.DataFrame(columns=["case_id", "distance"])
    exact_max = EXACT_MAX if exact_max is None else int(exact_max)
    if len(case_ids) > exact_max and len(pool) > max(exact_max, k):
        return _nearest_indexed(index[query], case_ids, matrix, np.array([index[c] for c in pool]), k)
    if len(case_ids) > exact_max:  # few candidates in a large file: normalise only the rows needed
        rows = np.array([index[c] for c in pool])
        q = matrix[index[query]] / max(float(np.linalg.norm(matrix[index[query]])), 1e-12)
        sub = matrix[rows]
        dist = 1.0 - (sub / np.maximum(np.linalg.norm(sub, axis=1, keepdims=True), 1e-12)) @ q
    else:
        norms = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        q = norms[index[query]]
        rows = np.array([index[c] for c in pool])
        dist = 1.0 - norms[rows] @ q
    order = np.argsort(dist, kind="stable")[:k]
    return pd.DataFrame({"case_id": [pool[i] for i in order], "distance": dist[order].astype(float)})


_CACHE: dict[str, object] = {}


def _unit_index(matrix: np.ndarray) -> tuple[np.ndarray, NeighbourIndex]:
    """Unit rows ``(N, D)`` float32 of ``matrix`` and their ``NeighbourIndex``, cached for this object."""
    if _CACHE.get("matrix") is not matrix:
        unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        _CACHE.clear()
        _CACHE.update(matrix=matrix, unit=unit, index=NeighbourIndex(unit.astype(np.float64), exact_max=0))
    return _CACHE["unit"], _CACHE["index"]  # type: ignore[return-value]


def _nearest_indexed(row: int, case_ids: list[str], matrix: np.ndarray, allowed: np.ndarray, k: int) -> pd.DataFrame:
    unit, neighbours = _unit_index(matrix)
    _, found = neighbours.search(unit[row:row + 1].astype(np.float64), min(k, len(allowed)), allowed=allowed)
    rows = found[0]
    dist = 1.0 - unit[rows] @ unit[row]
    order = np.argsort(dist, kind="stable")
    return pd.DataFrame({"case_id": [case_ids[i] for i in rows[order]], "distance": dist[order].astype(float)})


def project_2d(matrix: np.ndarray, seed: int = 0) -> np.ndarray:
    """PCA of ``matrix`` ``(N, D)`` to ``(N, 2)`` (zeros in a column when D or N is too small)."""
    n_comp = min(2, matrix.shape[0], matrix.shape[1])
    out = np.zeros((matrix.shape[0], 2), dtype=np.float64)
    if n_comp:
        out[:, :n_comp] = PCA(n_components=n_comp, random_state=seed).fit_transform(matrix)
    return out
