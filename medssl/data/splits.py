"""Patient-level splits: no patient ever lands in two splits; stratified when labels exist.

scikit-learn is imported only for a stratified split: an unlabelled ingest (``medssl ingest dicom``)
draws its plain split with numpy alone, the same ids as ``train_test_split`` (importing
scikit-learn costs about a second of CPU per run).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medssl.data.limits import MAX_SEED
from medssl.errors import DataError

SPLITS = ("train", "val", "test")


def _patient_labels(df: pd.DataFrame, label_col: str) -> pd.Series | None:
    """One label per patient (its most frequent case label; ties -> smallest) or ``None`` if unlabeled.

    Vectorised (one groupby over (patient, label) counts), so 10^5 patients take well under a second.
    """
    if label_col not in df.columns or df[label_col].isna().all():
        return None
    labelled = df.dropna(subset=[label_col])
    counts = labelled.groupby(["patient_id", label_col]).size().rename("n").reset_index()
    counts = counts.sort_values(["patient_id", "n", label_col], ascending=[True, False, True])
    per_patient = counts.drop_duplicates("patient_id").set_index("patient_id")[label_col]
    return per_patient.reindex(df["patient_id"].unique())


def _split_ids(ids: np.ndarray, strat: np.ndarray | None, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if test_size <= 0 or len(ids) < 2:
        return ids, ids[:0]
    n_test = max(1, int(round(test_size * len(ids))))
    if n_test >= len(ids):
        return ids, ids[:0]
    if strat is not None:
        _, counts = np.unique(strat, return_counts=True)
        n_classes = len(counts)
        if counts.min() < 2 or n_test < n_classes or len(ids) - n_test < n_classes:
            strat = None  # too few patients per class to stratify; fall back to a plain split
    if strat is None:
        return _plain_split(ids, n_test, seed)
    from sklearn.model_selection import train_test_split

    a, b = train_test_split(ids, test_size=n_test, random_state=seed, stratify=strat)
    return np.asarray(a), np.asarray(b)


def _plain_split(ids: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``train_test_split(ids, test_size=n_test, random_state=seed)`` without scikit-learn.

    ``ShuffleSplit``'s draw: one ``RandomState(seed).permutation``; its first ``n_test`` positions
    are the test ids, the rest (in permutation order) the train ids. Shapes: (n - n_test,), (n_test,).
    """
    permutation = np.random.RandomState(seed).permutation(len(ids))
    return ids[permutation[n_test:]], ids[permutation[:n_test]]


def check_seed(seed: int) -> None:
    """Raise ``DataError`` unless ``seed`` is a whole number in ``[0, MAX_SEED]``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise DataError(f"--seed {seed!r} must be a whole number from 0 to {MAX_SEED}")


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ``DataError`` unless both shares are in [0, 1) and sum below 1."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataError(
            f"split fractions val={val_fraction}, test={test_fraction} must be in [0, 1) and sum below 1"
        )


def assign_patient_splits(
    df: pd.DataFrame,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    label_col: str = "label",
) -> pd.Series:
    """A ``split`` value (train/val/test) per row of ``df``, drawn at patient level.

    Fractions are of patients. Stratified on each patient's majority label when ``label_col``
    holds labels (and every class has enough patients). Returns a Series aligned to ``df``.
    """
    check_split_fractions(val_fraction, test_fraction)
    check_seed(seed)
    patients = pd.Index(df["patient_id"].astype(str).unique())
    labels = _patient_labels(df.assign(patient_id=df["patient_id"].astype(str)), label_col)
    strat = None
    if labels is not None and not labels.isna().any():
        strat = labels.reindex(patients).astype(str).to_numpy()
    ids = patients.to_numpy()
    rest, test = _split_ids(ids, strat, test_fraction, seed)
    strat_rest = None if strat is None else pd.Series(strat, index=ids).reindex(rest).to_numpy()
    rel_val = val_fraction / (1 - test_fraction) if test_fraction < 1 else 0
    train, val = _split_ids(rest, strat_rest, rel_val, seed + 1)
    mapping = {**{p: "train" for p in train}, **{p: "val" for p in val}, **{p: "test" for p in test}}
    return df["patient_id"].astype(str).map(mapping).rename("split")
