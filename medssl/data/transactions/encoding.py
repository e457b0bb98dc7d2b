"""Turn table rows into fixed-width float vectors; statistics fitted on TRAIN rows only.

Row vector layout (``F = n_numeric + n_categorical``)::

    [ scaled numeric columns | missing indicators | categorical indices (as floats) ]
      n_numeric = len(numeric columns) + len(indicator columns)

- numeric ``x``: ``v = sign(x) * log1p(|x|)`` for amount columns, else ``v = x``; then
  ``(v - median) / scale`` with ``scale = IQR / 1.349`` (the std of a normal; falls back to the
  std, then 1, for columns with a zero IQR); clipped to ``[-clip, clip]``. A missing or
  non-numeric value becomes 0 (= the train median) and sets its indicator, for every column that
  had missing values in the training rows (other columns impute silently-but-counted: the
  ingest's errors.csv has the counts).
- categorical: index ``1 + position`` in the sorted train categories; unseen or missing -> 0
  (the "unknown" index). ``cardinalities[j] = 1 + len(categories)``.

The whole recipe is one JSON-able dict (``preprocessing``) stored in checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medssl.data.transactions.schema import TableSchema
from medssl.errors import DataError

CLIP = 10.0
IQR_TO_STD = 1.349


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: compresses money amounts, keeps sign and zero."""
    return np.sign(x) * np.log1p(np.abs(x))


def _numeric(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _categories(values: pd.Series) -> list[str]:
    return sorted({str(v) for v in values.dropna().tolist()})


def fit_preprocessing(rows: pd.DataFrame, schema: TableSchema, history: int = 0, clip: float = CLIP) -> dict[str, Any]:
    """The encoding recipe fitted on ``rows`` (pass only the TRAIN rows) for ``schema``'s features."""
    if len(rows) == 0:
        raise DataError("no training rows to fit the preprocessing on; check the manifest's split column")
    numeric: list[dict[str, Any]] = []
    for col in schema.numeric:
        raw = _numeric(rows[col])
        log = col in schema.amount
        v = signed_log1p(raw) if log else raw
        present = v[np.isfinite(v)]
        if present.size == 0:
            median, scale = 0.0, 1.0
        else:
            median = float(np.median(present))
            q75, q25 = np.percentile(present, [75, 25])
            scale = float((q75 - q25) / IQR_TO_STD)
            if not scale > 1e-12:
                scale = float(present.std()) if present.std() > 1e-12 else 1.0
        numeric.append({"column": col, "log": log, "median": median, "scale": scale,
                        "indicator": bool((~np.isfinite(v)).any())})
    categorical = [{"column": col, "categories": _categories(rows[col])} for col in schema.categorical]
    n_ind = sum(n["indicator"] for n in numeric)
    return {
        "version": 1,
        "numeric": numeric,
        "categorical": categorical,
        "clip": float(clip),
        "history": int(history),
        "n_numeric": len(numeric) + n_ind,
        "cardinalities": [1 + len(c["categories"]) for c in categorical],
        "feature_names": [n["column"] for n in numeric]
        + [f"{n['column']}__missing" for n in numeric if n["indicator"]]
        + [c["column"] for c in categorical],
    }


def encode_rows(rows: pd.DataFrame, prep: dict[str, Any]) -> np.ndarray:
    """Rows -> ``(N, F)`` float32 with the recipe ``prep``. Unseen categories and NaNs never fail."""
    missing = [spec["column"] for spec in prep["numeric"] + prep["categorical"] if spec["column"] not in rows.columns]
    if missing:
        raise DataError(
            f"the data lacks column(s) {missing} that the model was trained with; ingest it with the same columns"
        )
    clip = prep["clip"]
    scaled, indicators = [], []
    for spec in prep["numeric"]:
        raw = _numeric(rows[spec["column"]])
        v = signed_log1p(raw) if spec["log"] else raw
        z = np.clip((v - spec["median"]) / spec["scale"], -clip, clip)
        bad = ~np.isfinite(v)
        scaled.append(np.where(bad, 0.0, z))
        if spec["indicator"]:
            indicators.append(bad.astype(np.float64))
    cats = []
    for spec in prep["categorical"]:
        lookup = {c: i + 1 for i, c in enumerate(spec["categories"])}
        cats.append(np.array([0 if pd.isna(v) else lookup.get(str(v), 0) for v in rows[spec["column"]]], dtype=np.float64))
    cols = scaled + indicators + cats
    if not cols:
        return np.zeros((len(rows), 0), dtype=np.float32)
    return np.stack(cols, axis=1).astype(np.float32)


def one_hot_categoricals(x: np.ndarray, prep: dict[str, Any]) -> np.ndarray:
    """Encoded rows ``(N, F)`` (layout above, history-free) with each categorical index column
    replaced by one 0/1 column per category, including the "unknown" index 0:
    ``(N, n_numeric + sum(cardinalities))``.

    For consumers that read columns as magnitudes (distance- and tail-based anomaly scorers,
    linear models): an index such as ``3`` for TRANSFER is not "more" than ``1`` for CASH_IN.
    Indices outside ``[0, cardinality)`` count as unknown (0).
    """
    x = np.asarray(x)
    n_num, cards = int(prep["n_numeric"]), [int(c) for c in prep["cardinalities"]]
    if x.ndim != 2 or x.shape[1] != n_num + len(cards):
        raise DataError(f"expected encoded rows of width {n_num + len(cards)} (n_numeric {n_num} + "
                        f"{len(cards)} categorical), got shape {x.shape}")
    blocks = [x[:, :n_num].astype(np.float32)]
    for j, card in enumerate(cards):
        idx = np.rint(x[:, n_num + j]).astype(np.int64)
        idx = np.where((idx >= 0) & (idx < card), idx, 0)
        blocks.append(np.eye(card, dtype=np.float32)[idx])
    return np.concatenate(blocks, axis=1)
