"""Labels for fine-tuning: loading them, and drawing the labelled subset at patient level.

Labelled subsets are drawn by patient (``unit="patient"``: whole patients, for images and ICU
stays) or by case (``unit="case"``: a few cases of every patient, for ECG beats and sensor windows,
whose patients hold thousands of cases each).

Labels are strings everywhere (``"0"``, ``"pneumonia"``); a model's class ids index the sorted
list of label strings seen in training. Sources:

- ``--labels CSV`` with columns ``case_id,label`` or ``patient_id,label`` (a patient's label is
  applied to every case of that patient);
- otherwise the manifest's own ``label`` column.

Every problem (unknown ids, empty labels, one class only, fewer labelled cases than asked,
a CSV with neither id column) raises ``LabelError`` naming it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from medssl.data.splits import assign_patient_splits
from medssl.errors import LabelError


def normalize_label(value: Any) -> str | None:
    """A label as a clean string (``1.0`` -> ``"1"``); ``None`` for missing values."""
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    text = str(value).strip()
    return text or None


def _examples(values: Sequence[Any], n: int = 3) -> str:
    shown = [str(v) for v in list(values)[:n]]
    return ", ".join(repr(v) for v in shown) + (" ..." if len(values) > n else "")


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise LabelError(f"labels file {path} does not exist; pass a CSV with columns case_id,label or patient_id,label")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LabelError(f"labels file {path} is not a readable CSV ({exc}); save it as UTF-8 CSV") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    return df


def load_labels(manifest: pd.DataFrame, labels_csv: str | Path | None = None) -> pd.Series:
    """One label string (or ``None``) per manifest row, aligned with ``manifest``'s rows.

    Raises ``LabelError`` when the source holds no usable labels or does not match the manifest.
    """
    index = manifest.index
    if labels_csv is None:
        if "label" not in manifest.columns:
            raise LabelError(
                "the manifest has no label column; pass --labels CSV with columns case_id,label or patient_id,label"
            )
        labels = pd.Series([normalize_label(v) for v in manifest["label"]], index=index, dtype=object)
        if labels.isna().all():
            raise LabelError("every case in the manifest has an empty label; pass --labels CSV with the labels")
        return labels

    path = Path(labels_csv)
    df = _read_csv(path)
    if "label" not in df.columns:
        raise LabelError(f"labels file {path} has no 'label' column (columns: {list(df.columns)}); add one")
    key = "case_id" if "case_id" in df.columns else "patient_id" if "patient_id" in df.columns else None
    if key is None:
        raise LabelError(
            f"labels file {path} has neither a case_id nor a patient_id column (columns: {list(df.columns)}); "
            "name the id column case_id or patient_id"
        )
    df = df[[key, "label"]].assign(**{key: df[key].str.strip(), "label": df["label"].map(normalize_label)})
    if (df[key] == "").any():
        raise LabelError(f"labels file {path} has {int((df[key] == '').sum())} row(s) with an empty {key}")
    missing = df["label"].isna()
    if missing.any():
        raise LabelError(
            f"labels file {path} has {int(missing.sum())} row(s) with a missing label "
            f"(e.g. {key} {_examples(df.loc[missing, key].tolist())}); fill them in or delete those rows"
        )
    if df.empty:
        raise LabelError(f"labels file {path} holds no labels")
    conflicts = df.groupby(key)["label"].nunique()
    if (conflicts > 1).any():
        bad = conflicts[conflicts > 1].index.tolist()
        raise LabelError(f"labels file {path} gives different labels to the same {key}: {_examples(bad)}")
    mapping = df.drop_duplicates(key).set_index(key)["label"]
    known = set(manifest[key].astype(str))
    unknown = [k for k in mapping.index if k not in known]
    if unknown:
        raise LabelError(
            f"labels file {path} names {len(unknown)} {key}(s) that are not in the manifest, e.g. "
            f"{_examples(unknown)}; check that it belongs to this DATA_DIR"
        )
    return pd.Series(manifest[key].astype(str).map(mapping).to_numpy(), index=index, dtype=object)


def class_names(labels: pd.Series) -> list[str]:
    """Sorted distinct label strings; raises ``LabelError`` with fewer than two classes."""
    names = sorted(set(labels.dropna().tolist()))
    if len(names) < 2:
        raise LabelError(
            f"the labelled cases hold a single class ({names[0] if names else 'none'}); "
            "fine-tuning needs examples of at least two classes"
        )
    return names


_TRIES = 50


def _greedy(order: np.ndarray, counts: np.ndarray, target: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Take patients in ``order`` whose per-class counts still fit in ``target`` (C,) exactly."""
    remaining = target.copy()
    taken: list[int] = []
    for p in order:
        if remaining.sum() == 0:
            break
        if (counts[p] <= remaining).all() and counts[p].sum() > 0:
            taken.append(int(p))
            remaining -= counts[p]
    return taken, remaining


def _proportional(class_totals: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` over classes in proportion to ``class_totals`` (largest remainder, >= 1 each)."""
    raw = class_totals / class_totals.sum() * n
    quota = np.maximum(np.floor(raw).astype(int), 1)
    quota = np.minimum(quota, class_totals)
    while quota.sum() < n:
        gap = np.where(quota < class_totals, raw - quota, -np.inf)
        quota[int(np.argmax(gap))] += 1
    while quota.sum() > n:
        spare = np.where(quota > 1, quota - raw, -np.inf)
        quota[int(np.argmax(spare))] -= 1
    return quota


LABEL_UNITS = ("patient", "case")


def _per_case(cls: np.ndarray, pat_codes: np.ndarray, target: np.ndarray, seed: int) -> np.ndarray:
    """Positions (into the candidates) of ``target[c]`` cases of each class ``c``, spread over
    patients in proportion to their cases of that class (systematic sampling over the class's
    cases ordered by patient, then at random within a patient)."""
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for c, n in enumerate(target.tolist()):
        members = np.flatnonzero(cls == c)
        if n == 0 or members.size == 0:
            continue
        order = members[np.lexsort((rng.random(members.size), rng.permutation(pat_codes.max() + 1)[pat_codes[members]]))]
        step = members.size / n
        picks = np.floor(rng.random() * step + step * np.arange(n)).astype(np.int64)
        chosen.append(order[np.minimum(picks, members.size - 1)])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def draw_labelled_subset(
    patient_ids: Sequence[Any],
    labels: pd.Series | Sequence[str | None],
    pool: np.ndarray | None = None,
    fraction: float | None = None,
    shots: int | None = None,
    seed: int = 0,
    unit: str = "patient",
) -> np.ndarray:
    """Row indices of the labelled subset, drawn whole patient by whole patient (``unit="patient"``)
    or case by case (``unit="case"``).

    ``pool`` (N,) bool restricts the candidates (e.g. the train split); labelled pool rows are the
    candidates. ``fraction`` asks for ``round(fraction * n_candidates)`` cases stratified by class;
    ``shots`` asks for exactly ``shots`` cases of every class; neither means all candidates. The
    result has exactly the asked size. By patient, it contains every case of each chosen patient
    that is a candidate; by case, each class's cases are spread over the patients in proportion to
    how many of that class each holds (so every patient with enough cases gets some). Raises
    ``LabelError`` when the size cannot be met.
    """
    if fraction is not None and shots is not None:
        raise LabelError("give either a label fraction or a number of shots, not both")
    if unit not in LABEL_UNITS:
        raise LabelError(f"unknown label unit {unit!r}; use one of {', '.join(LABEL_UNITS)}")
    lab = pd.Series(list(labels), dtype=object)
    pids = pd.Series([str(p) for p in patient_ids])
    cand = lab.notna().to_numpy().copy()
    if pool is not None:
        cand &= np.asarray(pool, dtype=bool)
    rows = np.flatnonzero(cand)
    if rows.size == 0:
        raise LabelError("no labelled cases to fine-tune on (check the labels and the train split)")
    classes = class_names(lab.iloc[rows])
    if fraction is None and shots is None:
        return rows
    cls = pd.Categorical(lab.iloc[rows], categories=classes).codes
    pat_codes, patients = pd.factorize(pids.iloc[rows])
    counts = np.zeros((len(patients), len(classes)), dtype=np.int64)
    np.add.at(counts, (pat_codes, cls), 1)
    totals = counts.sum(axis=0)
    if shots is not None:
        if shots < 1:
            raise LabelError(f"--shots must be at least 1, got {shots}")
        short = [f"{c} ({int(t)})" for c, t in zip(classes, totals) if t < shots]
        if short:
            raise LabelError(
                f"asked for {shots} labelled cases per class but there are fewer for class(es) {', '.join(short)}"
            )
        target = np.full(len(classes), shots, dtype=np.int64)
        asked = f"{shots} cases per class"
    else:
        if not 0 < fraction <= 1:
            raise LabelError(f"--label-fraction must be in (0, 1], got {fraction}")
        n = int(round(fraction * rows.size))
        if n < len(classes):
            raise LabelError(
                f"a label fraction of {fraction} of {rows.size} labelled cases is {n} case(s), fewer than "
                f"one per class ({len(classes)} classes); ask for a larger fraction"
            )
        target = _proportional(totals, n)
        asked = f"{n} cases ({fraction:g} of {rows.size})"
    if unit == "case":
        return np.sort(rows[_per_case(cls, pat_codes, target, seed)])
    rng = np.random.default_rng(seed)
    attempts = [(counts, target)]
    if fraction is not None:  # if per-class exactness is out of reach, keep the exact total only
        attempts.append((counts.sum(axis=1, keepdims=True), np.array([target.sum()])))
    remaining = target
    for attempt_counts, attempt_target in attempts:
        for _ in range(_TRIES):  # greedy fill is not complete: a few random orders find a fit
            taken, remaining = _greedy(rng.permutation(len(patients)), attempt_counts, attempt_target)
            if not remaining.sum():
                break
        if not remaining.sum():
            break
    if remaining.sum():
        raise LabelError(
            f"cannot draw exactly {asked} without splitting a patient (patients have several cases); "
            "ask for a slightly different size"
        )
    chosen = np.isin(pat_codes, taken)
    return np.sort(rows[chosen])


def validation_split(
    rows: np.ndarray, patient_ids: Sequence[Any], labels: Sequence[str | None], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (train, val) row indices at patient level, stratified by label."""
    df = pd.DataFrame(
        {"patient_id": [str(patient_ids[i]) for i in rows], "label": [labels[i] for i in rows]}
    )
    split = assign_patient_splits(df, val_fraction=val_fraction, test_fraction=0.0, seed=seed).to_numpy()
    return rows[split == "train"], rows[split == "val"]
