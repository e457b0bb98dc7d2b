"""Label loading and the patient-level labelled subset (exact size, never splits a patient)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medssl.errors import LabelError
from medssl.train.labels import draw_labelled_subset, load_labels, normalize_label, validation_split


def _manifest() -> pd.DataFrame:
    # 12 patients: p0..p5 with one case, p6..p11 with three cases; labels alternate by patient
    rows = []
    for p in range(12):
        for k in range(1 if p < 6 else 3):
            rows.append({"case_id": f"c{p}_{k}", "patient_id": f"p{p}", "domain": "imaging", "label": p % 2})
    return pd.DataFrame(rows)


def test_manifest_labels_are_normalised_strings() -> None:
    df = _manifest().assign(label=lambda d: d["label"].astype(float))
    df.loc[0, "label"] = np.nan
    labels = load_labels(df)
    assert labels.iloc[0] is None and labels.iloc[1] == "1" and labels.iloc[-1] == "1"
    assert normalize_label(" pneumonia ") == "pneumonia" and normalize_label(2.0) == "2"


def test_patient_csv_applies_to_every_case(tmp_path) -> None:
    df = _manifest()
    (tmp_path / "l.csv").write_text("patient_id,label\np6,yes\np7,no\n")
    labels = load_labels(df, tmp_path / "l.csv")
    assert labels[df.patient_id == "p6"].tolist() == ["yes"] * 3
    assert labels[df.patient_id == "p7"].tolist() == ["no"] * 3
    assert labels.notna().sum() == 6


@pytest.mark.parametrize(
    "text, match",
    [
        ("case_id,label\nc0_0,1\nnope,0\n", "not in the manifest.*'nope'"),
        ("case_id,label\nc0_0,1\nc1_0,\n", "missing label"),
        ("id,label\nc0_0,1\n", "neither a case_id nor a patient_id"),
        ("case_id,diagnosis\nc0_0,1\n", "no 'label' column"),
        ("case_id,label\nc0_0,1\nc0_0,0\n", "different labels"),
    ],
)
def test_bad_label_files(tmp_path, text: str, match: str) -> None:
    (tmp_path / "l.csv").write_text(text)
    with pytest.raises(LabelError, match=match):
        load_labels(_manifest(), tmp_path / "l.csv")


def test_manifest_without_labels() -> None:
    with pytest.raises(LabelError, match="no label column"):
        load_labels(_manifest().drop(columns="label"))


def test_fraction_subset_exact_and_patient_whole() -> None:
    df = _manifest()  # 24 cases
    labels = load_labels(df)
    rows = draw_labelled_subset(df.patient_id, labels, fraction=0.5, seed=3)
    assert len(rows) == 12
    chosen = set(df.patient_id.iloc[rows])
    assert len(rows) == df.patient_id.isin(chosen).sum()  # every case of a chosen patient is in
    assert set(labels.iloc[rows]) == {"0", "1"}
    assert np.array_equal(rows, draw_labelled_subset(df.patient_id, labels, fraction=0.5, seed=3))
    assert not np.array_equal(rows, draw_labelled_subset(df.patient_id, labels, fraction=0.5, seed=4))


def test_shots_and_errors() -> None:
    df = _manifest()
    labels = load_labels(df)
    rows = draw_labelled_subset(df.patient_id, labels, shots=4, seed=0)
    assert labels.iloc[rows].value_counts().to_dict() == {"0": 4, "1": 4}
    with pytest.raises(LabelError, match="fewer for class"):
        draw_labelled_subset(df.patient_id, labels, shots=13)
    with pytest.raises(LabelError, match="fewer than one per class"):
        draw_labelled_subset(df.patient_id, labels, fraction=0.01)
    with pytest.raises(LabelError, match="single class"):
        draw_labelled_subset(df.patient_id, ["1"] * len(df))
    pool = (df.patient_id.isin(["p6", "p8"])).to_numpy()  # two 3-case patients of one class
    with pytest.raises(LabelError, match="single class"):
        draw_labelled_subset(df.patient_id, labels, pool=pool, fraction=0.5)


def test_unreachable_size_is_an_error() -> None:
    df = pd.DataFrame({"patient_id": np.repeat(["a", "b", "c", "d"], 2), "label": list("00110011")})
    with pytest.raises(LabelError, match="without splitting a patient"):
        draw_labelled_subset(df.patient_id, df.label, fraction=3 / 8)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=4, max_size=30),
    fraction=st.floats(0.05, 1.0),
    seed=st.integers(0, 1000),
)
def test_subset_property(sizes: list[int], fraction: float, seed: int) -> None:
    pids = np.repeat([f"p{i}" for i in range(len(sizes))], sizes)
    labels = [str(i % 2) for i in range(len(pids))]  # mixed-label patients too
    n_asked = int(round(fraction * len(pids)))
    try:
        rows = draw_labelled_subset(pids, labels, fraction=fraction, seed=seed)
    except LabelError as exc:  # only for sizes that are truly out of reach
        if "fewer than one per class" in str(exc):
            assert n_asked < 2  # two classes
        else:
            assert "without splitting" in str(exc)
            sums = {0}  # every total a set of whole patients can reach (subset sums of the sizes)
            for size in sizes:
                sums |= {t + size for t in sums}
            assert n_asked not in sums, (sizes, n_asked)
        return
    assert len(rows) == n_asked
    chosen = set(pids[rows])
    assert np.isin(pids, list(chosen)).sum() == len(rows)


def test_validation_split_is_patient_level() -> None:
    df = _manifest()
    labels = load_labels(df).to_numpy()
    train, val = validation_split(np.arange(len(df)), df.patient_id.to_numpy(), labels, 0.25, seed=0)
    assert len(train) + len(val) == len(df) and len(val) > 0
    assert not set(df.patient_id.iloc[train]) & set(df.patient_id.iloc[val])
