"""`medssl ingest ehr` on real PhysioNet 2012 / MIMIC-III files, the grid store and the EHR dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.cli import main
from medssl.data import get_domain, read_errors, read_manifest
from medssl.data.ehr import GridStore, make_ehr_dataset
from medssl.data.ehr.physionet2012 import VARIABLES
from medssl.data.record import read_record, recorded_file

N_REAL = 50


@pytest.fixture(scope="module")
def p12_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~50 real set-a stays + one bad file of each kind, ingested once for the module."""
    src = tmp_path_factory.mktemp("set-a")
    files = sorted((shared_data / "ehr/physionet2012/set-a").glob("*.txt"))[:N_REAL]
    for f in files:
        shutil.copy(f, src / f.name)
    (src / "900001.txt").write_text("")  # empty
    (src / "900002.txt").write_text("Time,Parameter,Value\n")  # truncated: header only
    (src / "900003.txt").write_text("Time,Param,Value\n00:00,Age,54\n")  # wrong column name
    (src / "900004.txt").write_text(
        "Time,Parameter,Value\n00:00,RecordID,900004\n00:00,Age,61\n00:05,HR,-20\n00:06,HR,eighty\n"
        "7 o'clock,HR,80\n01:10,HR,81\n"
    )
    out = tmp_path_factory.mktemp("p12") / "data"
    outcomes = shared_data / "ehr/physionet2012/Outcomes-a.txt"
    rc = main(["-q", "ingest", "ehr", str(src), "--format", "physionet2012", "--outcomes", str(outcomes), "--out", str(out)])
    assert rc == 0
    return out


def _rewrite(grid: GridStore, data_dir: Path) -> None:
    """Overwrite the grid file the manifest names, in place (same shapes, so the same size)."""
    grid.write(recorded_file(data_dir, "grid", "ehr/grid.npz", "medssl ingest ehr"), read_record(data_dir)["ingest_id"])


def _row(grid: GridStore, case_id: str) -> int:
    return list(grid.case_ids).index(case_id)


def test_stay_132539_exact_values(p12_dir: Path) -> None:
    grid = GridStore.load(p12_dir)
    i, hr = _row(grid, "132539"), grid.variables.index("HR")
    assert grid.variables == list(VARIABLES) and grid.values.shape == (N_REAL + 1, 37, 48)
    # 00:07 HR 73 and 00:37 HR 77 share hour 0 (mean); 01:37 HR 60 falls in hour 1
    assert grid.values[i, hr, 0] == pytest.approx(75.0) and grid.values[i, hr, 1] == 60.0
    assert grid.static[i, grid.static_names.index("Age")] == 54.0
    assert grid.static[i, grid.static_names.index("Gender")] == 0.0
    assert np.isnan(grid.static[i, grid.static_names.index("Height")])  # -1 = missing
    # never measured in this stay: mask 0 and value NaN everywhere
    chol = grid.variables.index("Cholesterol")
    assert grid.mask[i, chol].sum() == 0 and np.isnan(grid.values[i, chol]).all()
    assert (grid.mask == ~np.isnan(grid.values)).all()
    # delta: hours since last HR observation (observed in bins 0 and 1 -> 1 h at bin 2)
    assert grid.delta[i, hr, 0] == 0 and grid.delta[i, hr, 2] == 1.0
    events = pd.read_parquet(recorded_file(p12_dir, "events", "ehr/events.parquet", "medssl ingest ehr"))
    first = events[(events.case_id == "132539") & (events.variable == "HR")].sort_values("time_h").iloc[0]
    assert first.value == 73.0 and first.time_h == pytest.approx(7 / 60)


def test_half_hour_grid_puts_hr_73_in_its_own_bin(shared_data: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(shared_data / "ehr/physionet2012/set-a/132539.txt", src)
    shutil.copy(shared_data / "ehr/physionet2012/set-a/132540.txt", src)
    assert main(["-q", "ingest", "ehr", str(src), "--format", "physionet2012", "--step-hours", "0.5", "--out", str(tmp_path / "d")]) == 0
    grid = GridStore.load(tmp_path / "d")
    i, hr = _row(grid, "132539"), grid.variables.index("HR")
    assert grid.values.shape[-1] == 96
    assert grid.values[i, hr, :2].tolist() == [73.0, 77.0]


def test_manifest_labels_splits_and_bad_files(p12_dir: Path) -> None:
    m = read_manifest(p12_dir)
    assert len(m) == N_REAL + 1 and set(m.domain) == {"ehr"}
    assert m.set_index("case_id").loc["132539", "label"] == "0"
    assert set(m.split) == {"train", "val", "test"} and m.groupby("patient_id").split.nunique().max() == 1
    errors = read_errors(p12_dir)
    reasons = dict(zip(errors.path.map(lambda p: Path(p).name) + " " + errors.reason, errors["count"]))
    assert any(k.startswith("900001.txt empty file") for k in reasons)
    assert any(k.startswith("900002.txt file has a header but no rows") for k in reasons)
    assert any(k.startswith("900003.txt columns are") for k in reasons)
    assert reasons["900004.txt HR outside plausible range [1, 300]"] == "1"
    assert reasons["900004.txt value is not a number"] == "1"
    assert reasons["900004.txt unknown time format (expected hours, HH:MM or an ISO date)"] == "1"
    assert reasons["Outcomes-a.txt no outcome for RecordID 900004; the stay is kept unlabeled"] == "1"
    grid = GridStore.load(p12_dir)
    i, hr = _row(grid, "900004"), grid.variables.index("HR")
    assert grid.mask[i, hr].sum() == 1 and grid.values[i, hr, 1] == 81.0  # only the valid reading kept


def test_dataset_layout_and_train_only_normalisation(p12_dir: Path) -> None:
    m = read_manifest(p12_dir)
    ds = make_ehr_dataset(p12_dir, m, None)
    pre = ds.preprocessing
    v, c = 37, 37 + 5
    assert ds[0].shape == (2 * c, 48) and ds[0].dtype == torch.float32
    grid = GridStore.load(p12_dir)
    train = m.split.eq("train").to_numpy()
    hr = grid.variables.index("HR")
    hr_train = grid.values[m.grid_row[train], hr]
    assert pre["mean"][hr] == pytest.approx(float(np.nanmean(hr_train)), rel=1e-5)
    assert pre["std"][hr] == pytest.approx(float(np.nanstd(hr_train, ddof=1)), rel=1e-4)
    i = int(np.flatnonzero(m.case_id == "132539")[0])
    item, g = ds[i], _row(grid, "132539")
    assert torch.equal(item[c:c + v], torch.from_numpy(grid.mask[g]))  # masks = second half
    assert item[hr, 0].item() == pytest.approx((75.0 - pre["mean"][hr]) / pre["std"][hr], rel=1e-5)
    assert (item[:v][item[c:c + v] == 0] == 0).all()  # unobserved -> 0
    assert get_domain("ehr").encoder_kwargs(ds) == {"in_channels": 2 * c, "mask_channels": c}
    # changing a val case leaves the statistics unchanged; changing a train case does not
    tampered = GridStore.load(p12_dir)
    val_row = int(m.grid_row[m.split == "val"].iloc[0])
    tampered.values[val_row] = tampered.values[val_row] * 10 + 100
    tampered.static[val_row] = 99.0
    _rewrite(tampered, p12_dir)
    assert make_ehr_dataset(p12_dir, m, None).preprocessing == pre
    tampered.values[int(m.grid_row[train].iloc[0])] += 50
    _rewrite(tampered, p12_dir)
    assert make_ehr_dataset(p12_dir, m, None).preprocessing["mean"][hr] != pre["mean"][hr]
    _rewrite(grid, p12_dir)  # restore for other tests
    # a saved preprocessing is re-applied as is
    assert make_ehr_dataset(p12_dir, m.iloc[:5], pre).preprocessing is pre


def test_mimic3_demo_all_136_stays(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "m3"
    assert main(["-q", "ingest", "ehr", str(shared_data / "ehr/mimic3_demo"), "--format", "mimic3", "--out", str(out)]) == 0
    m = read_manifest(out)
    assert len(m) == 136 and m.patient_id.nunique() == 100
    assert m.label.value_counts().to_dict() == {"0": 90, "1": 46}
    assert m.groupby("patient_id").split.nunique().max() == 1
    grid = GridStore.load(out)
    assert grid.values.shape == (136, 64, 48) and grid.static_names == ["Age", "Gender"]
    assert np.nanmax(grid.static[:, 0]) <= 90 and set(np.unique(grid.static[:, 1])) == {0.0, 1.0}
    assert (m.n_observations > 0).sum() > 100
    ds = make_ehr_dataset(out, m, None)
    assert ds[0].shape == (2 * 66, 48) and torch.isfinite(ds.tensor).all()



@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary", b'a,b\n"unterminated,1\n'])
def test_mimic3_unreadable_table_is_a_clear_error(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    """A damaged table (not UTF-8, broken quoting) ends in a one-line error naming it, not a traceback."""
    src = tmp_path / "m3"
    shutil.copytree(shared_data / "ehr/mimic3_demo", src)
    (src / "PATIENTS.csv").write_bytes(content)
    assert main(["-q", "ingest", "ehr", str(src), "--format", "mimic3", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "PATIENTS.csv is not a readable CSV" in err and "Traceback" not in err


def test_physionet2012_unreadable_outcomes_is_a_clear_error(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--outcomes that is binary or a folder ends in a one-line error, not a traceback."""
    src = tmp_path / "set-a"
    src.mkdir()
    for stay in sorted((shared_data / "ehr/physionet2012/set-a").glob("*.txt"))[:2]:
        shutil.copy(stay, src)
    binary = tmp_path / "Outcomes-a.txt"
    binary.write_bytes(b"\xff\xfe\x00binary")
    for outcomes, kind in ((binary, "UnicodeDecodeError"), (tmp_path, "IsADirectoryError")):
        args = ["-q", "ingest", "ehr", str(src), "--format", "physionet2012", "--outcomes", str(outcomes)]
        assert main(args + ["--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"--outcomes {outcomes} could not be read ({kind})" in err and "Traceback" not in err

def test_long_csv_and_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "vitals.csv"
    csv.write_text(
        "mrn,stay,t,name,val,died\n"
        "p1,s1,2024-01-01T08:00:00,HR,80,0\np1,s1,2024-01-01T09:30:00,HR,90,0\n"
        "p1,s2,2024-02-01T08:00:00,HR,70,\np1,s2,2024-02-01T10:00:00,Temp,abc,\n"
        "p2,s3,2024-03-01T08:00:00,HR,-4,1\np2,s3,yesterday,HR,60,1\np2,s3,2024-03-01T08:30:00,Temp,38.5,1\n"
    )
    base = ["-q", "ingest", "ehr", str(csv), "--format", "csv", "--patient-col", "mrn", "--time-col", "t",
            "--variable-col", "name", "--value-col", "val"]
    out = tmp_path / "d"
    assert main(base + ["--case-col", "stay", "--label-col", "died", "--out", str(out)]) == 0
    m = read_manifest(out).set_index("case_id")
    assert m.patient_id.to_dict() == {"s1": "p1", "s2": "p1", "s3": "p2"}
    assert m.label.fillna("?").to_dict() == {"s1": "0", "s2": "?", "s3": "1"}
    grid = GridStore.load(out)
    # variables are chosen on training stays only: p2 (the only valid Temp) is not in train
    assert m.split.to_dict() == {"s1": "train", "s2": "train", "s3": "test"}
    assert grid.variables == ["HR"]
    assert grid.values[_row(grid, "s1"), 0, :2].tolist() == [80.0, 90.0]
    reasons = set(read_errors(out).reason)
    assert {"value is not a number", "HR outside plausible range [1, 300]",
            "unknown time format (expected hours, HH:MM or an ISO date)"} <= reasons
    # a missing column, a missing flag, an empty file: one clear line and a non-zero exit
    capsys.readouterr()
    assert main(base[:-1] + ["value", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--value-col 'value'" in err and "Traceback" not in err
    assert main(base[:6] + ["--patient-col", "mrn", "--out", str(out)]) == 2
    assert "--time-col" in capsys.readouterr().err
    (tmp_path / "empty.csv").write_text("")
    assert main([*base[:3], str(tmp_path / "empty.csv"), *base[4:], "--out", str(out)]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["-q", "ingest", "ehr", str(tmp_path / "nope"), "--format", "mimic3", "--out", str(out)]) == 2
    assert main(["-q", "ingest", "ehr", str(tmp_path), "--format", "mimic3", "--out", str(out)]) == 2
    assert "ICUSTAYS.csv" in capsys.readouterr().err


@pytest.mark.parametrize("keep", [0, 300])
def test_truncated_grid_file_is_a_data_error(p12_dir: Path, tmp_path: Path, keep: int) -> None:
    """An empty or cut-off ehr/grid.npz raises DataError naming it (not BadZipFile/EOFError)."""
    from medssl.errors import DataError

    GridStore.load(p12_dir).save(tmp_path)
    path = tmp_path / "ehr" / "grid.npz"
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(DataError, match="grid.npz could not be read"):
        GridStore.load(tmp_path)
