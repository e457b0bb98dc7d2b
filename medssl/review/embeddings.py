"""Embeddings written by ``medssl score --embeddings``: nearest reviewed cases and a 2-D map.

File: Parquet with ``case_id`` and ``embedding`` (a fixed-size list of float32, one per case).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

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
    matrix = np.stack([np.asarray(v, dtype=np.float32) for v in df["embedding"]])
    return df["case_id"].astype(str).tolist(), matrix


def nearest_cases(query: str, case_ids: list[str], matrix: np.ndarray, candidates: set[str], k: int = 5) -> pd.DataFrame:
    """The ``k`` cases of ``candidates`` closest to ``query`` by cosine distance.

    ``matrix`` ``(N, D)`` rows follow ``case_ids``. Columns: case_id, distance (0 = same direction).
    """
    index = {c: i for i, c in enumerate(case_ids)}
    if query not in index:
        return pd.DataFrame(columns=["case_id", "distance"])
    pool = [c for c in candidates if c in index and c != query]
    if not pool:
        return pd.DataFrame(columns=["case_id", "distance"])
    norms = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    q = norms[index[query]]
    rows = np.array([index[c] for c in pool])
    dist = 1.0 - norms[rows] @ q
    order = np.argsort(dist, kind="stable")[:k]
    return pd.DataFrame({"case_id": [pool[i] for i in order], "distance": dist[order].astype(float)})


def project_2d(matrix: np.ndarray, seed: int = 0) -> np.ndarray:
    """PCA of ``matrix`` ``(N, D)`` to ``(N, 2)`` (zeros in a column when D or N is too small)."""
    n_comp = min(2, matrix.shape[0], matrix.shape[1])
    out = np.zeros((matrix.shape[0], 2), dtype=np.float64)
    if n_comp:
        out[:, :n_comp] = PCA(n_components=n_comp, random_state=seed).fit_transform(matrix)
    return out
