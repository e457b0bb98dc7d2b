"""Feedback re-ranking: reviewers' decisions re-order the cases nobody has decided yet.

A confirmed case pulls the cases that look like it (in the embeddings of ``medssl score
--embeddings``) up the queue; a dismissed case (a false alarm) pushes its look-alikes down; a case
unlike every decided one keeps its anomaly order. The re-ranked score of case ``i`` is

    domain_percentile_i / 100 + max_{c confirmed} K_pull(i, c) - max_{d dismissed} K_push(i, d),
    K_s(i, j) = exp(-|z_i - z_j|^2 / (2 s^2)),

``z`` the embeddings standardised per dimension over the re-ranked cases. The two widths are
quantiles of the distance from a case to its 10th nearest neighbour (a local scale taken from the
data, no labels): ``pull`` the 30th percentile, ``push`` the 80th. Findings are specific (a
confirmed fraud vouches for its near copies, not for the normal transactions around it), while a
dismissed false alarm speaks for a broad normal region (the normal beats of a record look alike).
A near copy of a confirmed case (K near 1) moves above every undecided case that resembles no
decision, and unflagged cases can enter the queue that way.

How the widths were chosen: on the development data only (ULB transactions file ``a``, MIT-BIH
DS1; two encoders each; the queue's top 10, 20 and 50 decided by reference label), among the
quantiles 0.1 / 0.3 / 0.5 / 0.8 for each width (and no pull at all), the pair whose worst AUPRC
change over the 12 settings was highest (ties: highest mean). A classifier fitted on the decisions
lost to the plain anomaly order there: ten decisions are often all of one kind (the top of a good
queue is all true findings, the top of a poor one all false alarms). Figures: README, "Feedback
re-ranking".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from sqlalchemy import select
from sqlalchemy.engine import Engine

from medssl.review.errors import ReviewError
from medssl.review.events import case_states
from medssl.review.models import Case

SCALE_NEIGHBOUR = 10  # the kernel widths are quantiles of the distance to the 10th nearest neighbour:
PULL_QUANTILE, PUSH_QUANTILE = 0.3, 0.8  # chosen on the development data (see above)
SCALE_SAMPLE = 5000  # sigma is estimated on at most this many cases (seeded sample)
DECISION_VALUE = {"confirmed": 1.0, "dismissed": 0.0}  # labelled (assign_class) cases carry no direction
SAYS_MIN = 0.05  # a pull or push below this is left out of a case's reason


def kernel_scales(z: np.ndarray, quantiles: tuple[float, ...], seed: int = 0) -> tuple[float, ...]:
    """The ``quantiles`` of the distance from a row of ``z`` ``(N, D)`` to its ``SCALE_NEIGHBOUR``-th
    nearest other row (on a seeded sample of at most ``SCALE_SAMPLE`` rows); 1.0 each when there are
    too few rows or the distance is 0."""
    if len(z) <= 2:
        return tuple(1.0 for _ in quantiles)
    rows = np.random.default_rng(seed).choice(len(z), size=min(len(z), SCALE_SAMPLE), replace=False)
    sample = z[rows]
    k = min(SCALE_NEIGHBOUR, len(sample) - 1)
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(sample).kneighbors(sample)
    return tuple(float(v) if v > 0 else 1.0 for v in np.quantile(dist[:, k], quantiles))


def _closest(z: np.ndarray, anchors: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel, index)``: for every row of ``z`` ``(N, D)`` the largest K to a row of ``anchors``
    ``(A, D)`` and which row that is (-1 when there are no anchors)."""
    if len(anchors) == 0:
        return np.zeros(len(z)), np.full(len(z), -1)
    # |z - a|^2 = |z|^2 + |a|^2 - 2 z.a: an (N, A) matrix, never (N, A, D)
    sq = (z ** 2).sum(axis=1)[:, None] + (anchors ** 2).sum(axis=1)[None, :] - 2.0 * z @ anchors.T
    nearest = sq.argmin(axis=1)
    return np.exp(-np.maximum(sq[np.arange(len(z)), nearest], 0.0) / (2.0 * sigma ** 2)), nearest


@dataclass(frozen=True)
class Feedback:
    """Per case ``(N,)``: ``score = percentile / 100 + pull - push`` (a decided case keeps
    ``percentile / 100``: its own decision does not move it); ``pull`` / ``push`` the kernel
    (in [0, 1]) to the closest confirmed / dismissed case, whose row in the decided cases of that
    kind is ``near_confirmed`` / ``near_dismissed`` (-1 when there is none)."""

    score: np.ndarray
    pull: np.ndarray
    push: np.ndarray
    near_confirmed: np.ndarray
    near_dismissed: np.ndarray


def feedback_scores(matrix: np.ndarray, percentile: np.ndarray, decisions: np.ndarray, seed: int = 0) -> Feedback:
    """Re-ranked scores from embeddings ``matrix`` ``(N, D)``, anomaly ``percentile`` ``(N,)`` in
    [0, 100] and ``decisions`` ``(N,)``: 1 confirmed, 0 dismissed, NaN undecided."""
    matrix = np.asarray(matrix, dtype=np.float64)
    percentile = np.asarray(percentile, dtype=np.float64)
    decisions = np.asarray(decisions, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) != len(percentile) or len(percentile) != len(decisions):
        raise ReviewError(f"feedback re-ranking needs one embedding, percentile and decision per case; got "
                          f"{matrix.shape}, {percentile.shape}, {decisions.shape}")
    z = StandardScaler().fit_transform(matrix) if len(matrix) > 1 else matrix
    pull_width, push_width = kernel_scales(z, (PULL_QUANTILE, PUSH_QUANTILE), seed)
    pull, near_c = _closest(z, z[decisions == 1.0], pull_width)
    push, near_d = _closest(z, z[decisions == 0.0], push_width)
    score = np.where(np.isnan(decisions), percentile / 100.0 + pull - push, percentile / 100.0)
    return Feedback(score, pull, push, near_c, near_d)


@dataclass(frozen=True)
class Reranking:
    """``table``: one row per re-ranked case, best first: case_id, domain, domain_percentile,
    reranked (the score), status, like_confirmed / like_dismissed (the closest decided case of each
    kind, or None, and its kernel ``pull`` / ``push``), reason (one line, e.g. "like confirmed c17
    (+0.83)"; empty when no decision moved the case). Counts of the decisions used."""

    table: pd.DataFrame
    n_confirmed: int
    n_dismissed: int


def rerank_cases(engine: Engine, case_ids: list[str], matrix: np.ndarray) -> Reranking:
    """Re-rank the store's cases that have an embedding (``case_ids`` rows of ``matrix`` ``(N, D)``)
    by the decisions recorded so far. Percentiles are each case's rank among its domain's
    imported cases (as in the queue)."""
    with engine.connect() as conn:
        cases = pd.DataFrame(conn.execute(select(Case.case_id, Case.domain, Case.score)).all(),
                             columns=["case_id", "domain", "score"])
    if cases.empty:
        raise ReviewError("no cases in the review store; import a score file first")
    cases["domain_percentile"] = cases.groupby("domain")["score"].rank(method="max", pct=True) * 100.0
    row_of = {c: i for i, c in enumerate(case_ids)}
    cases = cases[cases["case_id"].isin(row_of)].reset_index(drop=True)
    if cases.empty:
        raise ReviewError("no case in the embeddings file is in the review store: were both written by the "
                          "same `medssl score` run?")
    states = case_states(engine, None)
    cases["status"] = [states[c].status if c in states else "open" for c in cases["case_id"]]
    decisions = cases["status"].map(DECISION_VALUE).astype(float).to_numpy()
    emb = np.asarray(matrix)[[row_of[c] for c in cases["case_id"]]]
    fb = feedback_scores(emb, cases["domain_percentile"].to_numpy(), decisions)
    cases["reranked"], cases["pull"], cases["push"] = fb.score, fb.pull, fb.push
    for kind, value, near in (("confirmed", 1.0, fb.near_confirmed), ("dismissed", 0.0, fb.near_dismissed)):
        ids = cases["case_id"].to_numpy()[decisions == value]
        cases[f"like_{kind}"] = pd.Series([ids[j] if j >= 0 else None for j in near], dtype=object)
    cases["reason"] = [reason(r.status, r.like_confirmed, r.pull, r.like_dismissed, r.push)
                       for r in cases.itertuples(index=False)]
    table = cases.sort_values(["reranked", "domain_percentile", "case_id"], ascending=[False, False, True],
                              kind="stable", ignore_index=True)
    return Reranking(table=table, n_confirmed=int((decisions == 1.0).sum()), n_dismissed=int((decisions == 0.0).sum()))


def reason(status: str, like_confirmed: str | None, pull: float, like_dismissed: str | None, push: float) -> str:
    """Why a case moved, in one line: "like confirmed A (+0.83); like dismissed B (-0.12)"; a decided
    case says its decision; "" when no decision moved it by ``SAYS_MIN`` or more."""
    if status in DECISION_VALUE:
        return f"decided: {status}"
    parts = []
    if like_confirmed is not None and pull >= SAYS_MIN:
        parts.append(f"like confirmed {like_confirmed} (+{pull:.2f})")
    if like_dismissed is not None and push >= SAYS_MIN:
        parts.append(f"like dismissed {like_dismissed} (-{push:.2f})")
    return "; ".join(parts)
