"""``NeighbourIndex``: the ``k`` nearest reference rows, exact below a size, faiss IVF above it.

Same face either way::

    index = NeighbourIndex(reference)          # reference (M, D) float64, centred by the caller
    dist, idx = index.search(query, k)         # (N, k) float64 Euclidean distances, (N, k) int64 rows

Distances are always recomputed exactly in float64 for the rows found, nearest first; only the
*choice* of rows may be approximate. Up to ``EXACT_MAX`` references the search is the exact
brute force (float32 ``|r|^2 - 2 q.r`` candidates, ``torch.topk``); above it, a faiss
``IndexIVFFlat`` (``nlist = 2 sqrt(M)`` k-means cells trained on 64 rows per cell, seed fixed;
the ``nprobe = NPROBE`` nearest cells searched) proposes the candidates. IVF rather than HNSW: its build is deterministic (HNSW's
parallel insertion is not) and several times faster on few cores, so a model file stores only the
reference and the index is rebuilt identically on load. ``benchmarks/bench_knn_scale.py``
measures recall@10 and cost from 10k to 1M references.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from medssl.errors import ConfigError

EXACT_MAX = 100_000
"""References up to this many are searched exactly (brute force); above, with faiss IVF."""
NPROBE = 48
"""IVF cells searched per query (of ``2 sqrt(M)``): recall@10 >= 0.95 in the benchmark."""
SEED = 1234


def _faiss():  # imported only when needed: most reference sets are small
    try:
        import faiss
    except ImportError:
        raise ConfigError(f"more than {EXACT_MAX:,} reference cases need faiss: pip install faiss-cpu "
                          "(part of `make install`)") from None
    return faiss


def exact_search(query: np.ndarray, reference: np.ndarray, k: int,
                 reference32: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``k`` nearest rows of ``reference`` ``(M, D)`` for each row of ``query`` ``(N, D)``.

    Returns ``(dist, idx)``: ``(N, k)`` float64 Euclidean distances sorted ascending and the
    ``(N, k)`` int64 reference rows they belong to. Candidates from float32 ``|r|^2 - 2 q.r`` (the
    squared distance less ``|q|^2``, which does not change a row's order; one ``torch.addmm``)
    and ``torch.topk``, then the distances to those ``k`` recomputed in float64 (float32 alone
    turns near-duplicates' rounding noise into distances of ~1e-6). Query blocks bound memory.
    ``reference32`` is ``reference`` as a float32 tensor, when the caller keeps one.
    """
    ref64 = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float64))
    ref32 = reference32 if reference32 is not None else ref64.float()
    q64 = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float64))
    step = max(1, min(4096, (1 << 24) // max(1, len(ref64))))
    dists, idxs = [], []
    with torch.inference_mode():
        ref_sq = (ref32 * ref32).sum(dim=1).unsqueeze(0)  # (1, M)
        for start in range(0, len(q64), step):
            block64 = q64[start:start + step]
            sq = torch.addmm(ref_sq, block64.float(), ref32.T, alpha=-2.0)
            idx = torch.topk(sq, k, dim=1, largest=False).indices  # (b, k)
            exact = torch.linalg.vector_norm(ref64[idx] - block64[:, None, :], dim=2)  # (b, k) float64
            exact, order = exact.sort(dim=1)
            dists.append(exact)
            idxs.append(torch.gather(idx, 1, order))
    if not dists:
        return torch.zeros((0, k), dtype=torch.float64), torch.zeros((0, k), dtype=torch.int64)
    return torch.cat(dists), torch.cat(idxs)


class NeighbourIndex:
    """Nearest reference rows by Euclidean distance; exact up to ``exact_max`` rows, faiss IVF above.

    ``reference`` ``(M, D)`` float64 (centre it: float32 candidates keep their precision near the
    origin). ``exact_max`` defaults to ``EXACT_MAX`` (tests lower it), ``nprobe`` to ``NPROBE``.
    Deterministic: the same reference gives the same index and the same answers.
    """

    def __init__(self, reference: np.ndarray, exact_max: int | None = None, nprobe: int | None = None) -> None:
        self.reference = np.ascontiguousarray(reference, dtype=np.float64)
        self.exact_max = EXACT_MAX if exact_max is None else int(exact_max)
        self.approximate = len(self.reference) > self.exact_max
        self._faiss = None
        # float32 copy for the exact candidates; above exact_max faiss holds its own (and only the
        # rare query whose probed cells hold fewer than k rows falls back to the brute force)
        self._ref32 = torch.from_numpy(self.reference.astype(np.float32))
        if self.approximate:
            faiss = _faiss()
            m, d = self.reference.shape
            nlist = max(1, min(int(2 * math.sqrt(m)), m // 39))
            quantizer = faiss.IndexFlatL2(d)
            ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
            ivf.cp.seed = SEED
            ivf.cp.max_points_per_centroid = 64  # k-means on a seeded sample of 64 rows per cell
            ivf.train(self._ref32.numpy())
            ivf.add(self._ref32.numpy())
            self._ref32 = None  # faiss keeps the float32 rows; the fallback converts on demand
            ivf.nprobe = min(nlist, NPROBE if nprobe is None else int(nprobe))
            self._faiss = ivf

    def __len__(self) -> int:
        return len(self.reference)

    def candidates(self, query32: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """``(N, k)`` int64 candidate rows for float32 ``query32`` ``(N, D)`` from the faiss index,
        only among the rows ``allowed`` when given; -1 where the probed cells hold too few."""
        faiss = _faiss()
        params = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            params = faiss.SearchParametersIVF(sel=selector, nprobe=self._faiss.nprobe)
        _, idx = self._faiss.search(np.ascontiguousarray(query32, dtype=np.float32), k, params=params)
        return idx

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(dist, idx)``: ``(N, k)`` float64 distances ascending and ``(N, k)`` int64 rows, among
        the rows ``allowed`` (int64 ``(A,)``, ``A >= k``) when given, else among all."""
        dist, idx = self.search_torch(query, k, allowed)
        return dist.numpy(), idx.numpy()

    def search_torch(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``search`` as torch tensors (the scorer averages them in torch, as it always has)."""
        if not self.approximate:
            if allowed is None:
                return exact_search(query, self.reference, k, reference32=self._ref32)
            dist, sub = exact_search(query, self.reference[allowed], k)
            return dist, torch.from_numpy(np.asarray(allowed, dtype=np.int64))[sub]
        q64 = np.ascontiguousarray(query, dtype=np.float64)
        dists, idxs = [], []
        for start in range(0, len(q64), 8192):
            block = q64[start:start + 8192]
            idx = self.candidates(block.astype(np.float32), k, allowed)
            short = (idx < 0).any(axis=1)
            if short.any():  # the probed cells hold fewer than k (allowed) rows: search those exactly
                if allowed is None:
                    idx[short] = exact_search(block[short], self.reference, k, self._ref32)[1].numpy()
                else:
                    rows = np.asarray(allowed, dtype=np.int64)
                    idx[short] = rows[exact_search(block[short], self.reference[rows], k)[1].numpy()]
            exact = torch.linalg.vector_norm(
                torch.from_numpy(self.reference[idx]) - torch.from_numpy(block)[:, None, :], dim=2)
            exact, order = exact.sort(dim=1)
            dists.append(exact)
            idxs.append(torch.gather(torch.from_numpy(idx), 1, order))
        if not dists:
            return torch.zeros((0, k), dtype=torch.float64), torch.zeros((0, k), dtype=torch.int64)
        return torch.cat(dists), torch.cat(idxs)
