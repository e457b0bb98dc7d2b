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


def _beats(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """10 records of 1,000 beats; 5% S beats, but record r0 holds none and r9 holds 200."""
    rng = np.random.default_rng(seed)
    pids = np.repeat([f"r{i}" for i in range(10)], 1000)
    labels = np.where(rng.random(10000) < 0.05, "S", "N").astype(object)
    labels[pids == "r0"] = "N"
    labels[np.flatnonzero(pids == "r9")[:200]] = "S"
    return pids, labels


def test_case_unit_labels_a_few_beats_of_every_record() -> None:
    pids, labels = _beats()
    pool = np.ones(len(pids), dtype=bool)
    pool[pids == "r1"] = False  # e.g. not in the train split
    subset = draw_labelled_subset(pids, labels, pool=pool, fraction=0.01, seed=3, unit="case")
    n_cand = int(pool.sum())
    assert len(subset) == round(0.01 * n_cand) and len(set(subset.tolist())) == len(subset)
    assert pool[subset].all()
    got = pd.Series(labels[subset]).value_counts()
    want = pd.Series(labels[pool]).value_counts() * 0.01
    assert abs(got["S"] - want["S"]) < 1 and abs(got["N"] - want["N"]) < 1  # stratified by class
    per_record = pd.Series(pids[subset]).value_counts()
    assert set(per_record.index) == {f"r{i}" for i in range(10)} - {"r1"}  # every candidate record, not one or two
    # each class is spread over the records in proportion: r9 holds the most S beats, r0 none
    s_of = pd.Series(pids[subset][labels[subset] == "S"]).value_counts()
    assert "r0" not in s_of and s_of.idxmax() == "r9"
    # a whole-patient draw of the same size takes whole records
    whole = draw_labelled_subset(pids, labels, fraction=0.2, seed=3, unit="patient")
    assert pd.Series(pids[whole]).value_counts().tolist() == [1000, 1000]  # two complete records


def test_case_unit_is_seeded_exact_and_checked() -> None:
    pids, labels = _beats()
    a = draw_labelled_subset(pids, labels, fraction=0.01, seed=0, unit="case")
    assert np.array_equal(a, draw_labelled_subset(pids, labels, fraction=0.01, seed=0, unit="case"))
    b = draw_labelled_subset(pids, labels, fraction=0.01, seed=1, unit="case")
    assert len(set(a.tolist()) & set(b.tolist())) < len(a) // 2
    shots = draw_labelled_subset(pids, labels, shots=7, seed=0, unit="case")
    assert pd.Series(labels[shots]).value_counts().to_dict() == {"N": 7, "S": 7}
    with pytest.raises(LabelError, match="label unit"):
        draw_labelled_subset(pids, labels, fraction=0.01, unit="beat")


def test_finetune_label_unit_flag(tmp_path, capsys) -> None:
    from medssl.cli import main
    from medssl.train.finetune_config import FinetuneConfig

    assert FinetuneConfig().label_unit == "auto" and FinetuneConfig(label_unit="case").label_unit == "case"
    with pytest.raises(SystemExit) as exit_:  # a usage error: argparse's exit 2, one line
        main(["finetune", "--checkpoint", "c.pt", "--data", "d", "--out", str(tmp_path / "o"), "--label-unit", "beat"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--label-unit" in err and err.count("\n") == 1 and "Traceback" not in err
