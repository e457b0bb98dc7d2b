"""A transaction case as a reviewer reads it: the transaction, how it differs from its entity's own
history, the history itself, and why it may have been flagged when no single feature stands out.

Reference columns (``label``, ``split``, and the column the ingest recorded as the label) are
left out unless the viewer may see them (``show_reference``).

Why flagged: an anomaly scorer ranks combinations, so a transaction can be the most unusual of all
while each of its features is within 2 standard deviations. The page then says so, and shows what
does set it apart: robust z-scores (median / MAD, which expose heavy-tailed features that a
standard deviation inflated by outliers hides) and its distance to its nearest transactions in
the standardised feature space, as a percentile of every transaction's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

STANDS_OUT = 3.0  # |z| from which one feature is said to stand out
NEIGHBOURS = 5
MIN_OWN_HISTORY = 3  # other transactions of the entity needed to compare against its own history
REFERENCE_COLUMNS = ("label", "split")


def hidden_columns(data_dir: Path, show_reference: bool) -> set[str]:
    """Manifest columns a viewer without ``show_reference`` must not see (labels, splits)."""
    if show_reference:
        return set()
    from medssl.data.record import read_record
    from medssl.errors import DataError

    hidden = set(REFERENCE_COLUMNS)
    try:
        schema = (read_record(data_dir) or {}).get("schema") or {}
    except DataError:  # a damaged record: read_manifest reports it; hide the defaults
        schema = {}
    label = schema.get("label_col")
    if label:
        hidden |= {str(label), f"x_{label}"}
    return hidden


def robust_z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(values - median) / (1.4826 MAD)`` per feature (``(F,)`` against ``(N, F)``); 0 where MAD = 0."""
    med = np.nanmedian(reference, axis=0)
    mad = 1.4826 * np.nanmedian(np.abs(reference - med), axis=0)
    return np.divide(values - med, mad, out=np.zeros_like(values, dtype=np.float64), where=mad > 0)


def neighbour_distance(features: np.ndarray, index: int, k: int = NEIGHBOURS) -> tuple[float, float]:
    """Mean distance of row ``index`` to its ``k`` nearest other rows in standardised ``features``
    ``(N, F)``, and the percentile of that distance among every row's own (0-100)."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, dtype=np.float64)
    x = np.where(np.isnan(x), np.nanmedian(x, axis=0), x)
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    k = max(1, min(k, len(z) - 1))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    mean = dist[:, 1:].mean(axis=1)
    return float(mean[index]), float((mean < mean[index]).mean() * 100.0)


def why_flagged(values: np.ndarray, reference: np.ndarray, names: list[str], features: np.ndarray,
                index: int) -> tuple[pd.DataFrame, str]:
    """A table of the features by |robust z| (``feature, value, median, robust_z, z``) and the sentence
    saying why the case stands out. ``values`` ``(F,)``; ``reference`` and ``features`` ``(N, F)``."""
    values = np.asarray(values, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    mean, std = np.nanmean(reference, axis=0), np.nanstd(reference, axis=0)
    z = np.divide(values - mean, std, out=np.zeros_like(values), where=std > 0)
    rz = robust_z(values, reference)
    order = np.argsort(-np.abs(rz), kind="stable")[:8]
    table = pd.DataFrame({"feature": [names[i] for i in order], "value": values[order],
                          "median": np.nanmedian(reference, axis=0)[order], "robust_z": rz[order], "z": z[order]})
    top = int(np.argmax(np.abs(z)))
    dist, pct = neighbour_distance(features, index)
    near = (f"its mean distance to its {NEIGHBOURS} nearest transactions in the standardised feature space is "
            f"{dist:.2f}, more than that of {pct:.1f}% of all {len(features)} transactions")
    heavy = [names[i] for i in order[:3] if abs(rz[i]) >= STANDS_OUT]
    robust = (f"; against the median and MAD (robust to heavy tails) {', '.join(heavy)} stand out "
              f"(robust z {', '.join(f'{rz[names.index(h)]:.1f}' for h in heavy)})" if heavy else "")
    if abs(z[top]) < STANDS_OUT:
        text = (f"No single feature stands out: the largest |z| is {abs(z[top]):.1f} ({names[top]}), under "
                f"{STANDS_OUT:g}. What sets it apart is the combination: {near}{robust}.")
    else:
        text = f"{names[top]} stands out (z = {z[top]:.1f}); {near}{robust}."
    return table, text
