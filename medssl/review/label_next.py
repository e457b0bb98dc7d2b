""""Label next": the undecided cases whose labels would help the next fine-tune most.

Two signals, combined the usual way of batch active learning (uncertainty pool, then a core set):

1. **Uncertainty** of the current model: ``predicted_proba`` (the probability of the predicted
   class, from the score file / ``cases`` table) closest to ``1 / n_classes`` (a coin toss), as
   ``uncertainty = 1 - (p - 1/k) / (1 - 1/k)`` in [0, 1] (1 = the model cannot tell the classes
   apart). ``n_classes`` ``k`` is the number of distinct predicted labels of the case's domain (at
   least 2).
2. **Diversity** over the embeddings (``medssl score --embeddings``): within the ``pool_factor x n``
   most uncertain cases, ``n`` are picked by greedy farthest-first traversal (k-center) on the
   standardised embeddings, starting from the cases already decided: each pick is the pool case
   farthest from every decided or already picked case, so the batch does not spend labels on
   near-duplicates.

Without ``predicted_proba`` (a pretrained-only model scores no classes) every undecided case is in
the pool and diversity alone picks; without embeddings, uncertainty alone. Decided cases (any
standing decision) are never picked.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from medssl.review.errors import ReviewError
from medssl.review.events import case_states
from medssl.review.models import Case

PICK_COLUMNS = ("rank", "case_id", "domain", "predicted_label", "predicted_proba", "uncertainty", "distance", "reason")


def uncertainty(proba: np.ndarray, n_classes: np.ndarray) -> np.ndarray:
    """``(N,)`` in [0, 1] from the predicted class's probability ``proba`` ``(N,)`` and the number
    of classes ``(N,)``: 1 when ``proba == 1/k``, 0 when ``proba == 1``; NaN where ``proba`` is NaN."""
    k = np.maximum(np.asarray(n_classes, dtype=np.float64), 2.0)
    p = np.asarray(proba, dtype=np.float64)
    return np.clip(1.0 - (p - 1.0 / k) / (1.0 - 1.0 / k), 0.0, 1.0)


def standardise(matrix: np.ndarray, rows: Sequence[int] | None = None) -> np.ndarray:
    """``matrix`` ``(N, D)`` (or its ``rows``) with every column scaled by the whole matrix's mean
    and std to mean 0, std 1 (a constant column stays 0): ``(N or len(rows), D)`` float64."""
    mean = matrix.mean(axis=0, dtype=np.float64)
    std = matrix.std(axis=0, dtype=np.float64)
    x = np.asarray(matrix if rows is None else matrix[np.asarray(rows, dtype=np.int64)], dtype=np.float64)
    return (x - mean) / np.where(std > 0, std, 1.0)


def _min_dist(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``(N,)`` Euclidean distance of each of ``points`` ``(N, D)`` to its nearest of ``centers`` ``(M, D)``."""
    from medssl.anomaly.neighbours import exact_search

    return exact_search(points, centers, 1)[0][:, 0].numpy()


def farthest_first(points: np.ndarray, n: int, centers: np.ndarray | None = None) -> tuple[list[int], list[float]]:
    """Greedy k-center: ``n`` row indices of ``points`` ``(N, D)``, each the farthest from ``centers``
    ``(M, D)`` and the rows picked before it, with that distance (``inf`` for a first pick without
    centers, which is row 0: callers order rows best first). Ties go to the earlier row."""
    n = min(n, len(points))
    dist = _min_dist(points, centers) if centers is not None and len(centers) else np.full(len(points), np.inf)
    picked: list[int] = []
    gaps: list[float] = []
    taken = np.zeros(len(points), dtype=bool)
    for _ in range(n):
        i = int(np.argmax(np.where(taken, -1.0, dist)))  # first maximum: the earlier (more uncertain) row wins ties
        taken[i] = True
        picked.append(i)
        gaps.append(float(dist[i]))
        dist = np.minimum(dist, np.sqrt(((points - points[i]) ** 2).sum(axis=1)))
    return picked, gaps


def pick_label_next(candidates: pd.DataFrame, n: int, embeddings: tuple[Sequence[str], np.ndarray] | None = None,
                    decided: Sequence[str] = (), pool_factor: int = 10) -> pd.DataFrame:
    """Pick ``n`` of ``candidates`` (rows: case_id, domain, predicted_label, predicted_proba, n_classes)
    to label next; returns ``PICK_COLUMNS`` rows in pick order (rank 1 first).

    ``embeddings``: ``(case_ids, X (N, D))``; candidates missing from it are left out when it is
    given. ``decided``: case ids already decided (the first centres of the k-center traversal).
    """
    if n < 1:
        raise ReviewError("ask for at least 1 case to label next")
    df = candidates.reset_index(drop=True).copy()
    df["uncertainty"] = uncertainty(df["predicted_proba"].to_numpy(dtype=np.float64), df["n_classes"].to_numpy())
    if embeddings is not None:
        ids, matrix = embeddings
        index = {str(c): i for i, c in enumerate(ids)}
        df = df[df["case_id"].isin(index)].reset_index(drop=True)
        if df.empty:
            raise ReviewError("the embeddings file holds none of the undecided cases; pass the file "
                              "`medssl score --embeddings` wrote for the scores in the review store")
    has_proba = bool(df["uncertainty"].notna().any())
    # most uncertain first (no probability: last), case id breaks ties; the pool is the head of that order
    df = df.sort_values(["uncertainty", "case_id"], ascending=[False, True], na_position="last", kind="stable",
                        ignore_index=True)
    if not has_proba and embeddings is None:
        raise ReviewError("nothing to rank by: the scores hold no predicted_proba (a pretrained-only model) and the "
                          "app has no embeddings file; start it with `medssl app --embeddings EMBEDDINGS_PARQUET`")
    if embeddings is None:
        pool, gaps = df.head(n), [float("nan")] * min(n, len(df))
    else:
        pool = df.head(max(n, n * pool_factor)) if has_proba else df
        if not has_proba:  # no uncertainty to start from: start at the most typical case (nearest the pool mean)
            pts = standardise(matrix, [index[c] for c in pool["case_id"]])
            first = int(np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))
            pool = pool.iloc[[first, *[i for i in range(len(pool)) if i != first]]].reset_index(drop=True)
        rows = [index[c] for c in pool["case_id"]]
        centres = [index[c] for c in decided if c in index]
        picked, gaps = farthest_first(standardise(matrix, rows), n, standardise(matrix, centres) if centres else None)
        pool = pool.iloc[picked]
    out = pool.reset_index(drop=True)
    out["distance"] = gaps
    out["rank"] = np.arange(1, len(out) + 1)
    out["reason"] = [_reason(r, has_proba, embeddings is not None) for r in out.itertuples(index=False)]
    return out[list(PICK_COLUMNS)]


def _reason(row, has_proba: bool, diverse: bool) -> str:
    parts = []
    if has_proba and not pd.isna(row.predicted_proba):
        parts.append(f"p={row.predicted_proba:.2f} for {row.predicted_label!s} (uncertainty {row.uncertainty:.2f})")
    if diverse:
        parts.append("first pick" if np.isinf(row.distance) else f"{row.distance:.2f} from the nearest decided or picked case")
    return "; ".join(parts)


def label_next(engine: Engine, n: int, embeddings: tuple[Sequence[str], np.ndarray] | None = None,
               domain: str | None = None, pool_factor: int = 10) -> pd.DataFrame:
    """The ``n`` undecided cases of the review store (of ``domain``, or all) to label next
    (:func:`pick_label_next` on the ``cases`` table; decided cases are left out and seed the diversity)."""
    query = select(Case.case_id, Case.domain, Case.predicted_label, Case.predicted_proba)
    if domain:
        query = query.where(Case.domain == domain)
    with engine.connect() as conn:
        cases = pd.DataFrame(conn.execute(query).all(), columns=["case_id", "domain", "predicted_label", "predicted_proba"])
    if cases.empty:
        raise ReviewError("no scored cases in the review store" + (f" for domain {domain!r}" if domain else "")
                          + "; import a score file first (`medssl app --scores`)")
    cases["predicted_proba"] = pd.to_numeric(cases["predicted_proba"], errors="coerce").astype(float)
    n_classes = cases.dropna(subset=["predicted_label"]).groupby("domain")["predicted_label"].nunique()
    cases["n_classes"] = cases["domain"].map(n_classes).fillna(2).clip(lower=2).astype(int)
    states = case_states(engine, None)
    decided = [c for c, s in states.items() if s.status != "open"]
    open_cases = cases[~cases["case_id"].isin(set(decided))]
    if open_cases.empty:
        raise ReviewError("every scored case" + (f" of {domain!r}" if domain else "") + " is decided already: "
                          "there is nothing left to label; import a new score file")
    return pick_label_next(open_cases, n, embeddings, decided, pool_factor)
