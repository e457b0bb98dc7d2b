"""Numbers and ids guarded at ingest (issue 14, Build item 5): inf and float32 overflow are
errors.csv rows, duplicate stays and empty ids are never merged, flags are range-checked where
parsed, runs that produce nothing exit non-zero, manifests cannot point at another case's data.

Everything goes through the CLI and the public readers, with real PhysioNet 2012 / MIT-BIH files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medssl.cli import main
from medssl.data import get_domain, read_errors, read_manifest, write_manifest
from medssl.data.ehr import GridStore
from medssl.data.signals import load_windows
from medssl.errors import DataError

P12 = "ehr/physionet2012/set-a"


def _cli(*argv: object) -> tuple[int, str]:
    """Run ``medssl -q ARGV`` in-process: (exit code, last stderr line) via capsys-free capture."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(["-q", *map(str, argv)])
        except SystemExit as exc:  # argparse usage errors
            rc = int(exc.code or 0)
    text = err.getvalue()
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    return rc, lines[-1] if lines else ""


@pytest.fixture(scope="module")
def stays(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("stays")
    for f in sorted((shared_data / P12).glob("*.txt"))[:6]:
        shutil.copy(f, src / f.name)
    return src


def _ehr_csv(tmp_path: Path, rows: list[str]) -> list[str]:
    csv = tmp_path / "vitals.csv"
    csv.write_text("pid,t,var,val\n" + "\n".join(rows) + "\n")
    return ["ingest", "ehr", str(csv), "--format", "csv", "--patient-col", "pid", "--time-col", "t",
            "--variable-col", "var", "--value-col", "val"]


def test_ehr_csv_inf_and_float32_overflow_are_errors_rows_not_grid_values(tmp_path: Path) -> None:
    args = _ehr_csv(tmp_path, ["p1,0,X,80", "p1,1,X,1e39", "p1,2,X,inf", "p1,3,X,5", "p2,0,X,70", "p2,1,X,-Infinity"])
    assert _cli(*args, "--out", tmp_path / "d")[0] == 0
    grid = GridStore.load(tmp_path / "d")
    assert np.isfinite(grid.values[grid.mask > 0]).all() and int(grid.mask.sum()) == 3
    errors = read_errors(tmp_path / "d")
    inf_rows = errors[errors.reason.str.contains("infinite")]
    assert inf_rows["count"].astype(int).sum() == 3


def test_ehr_csv_empty_patient_id_is_an_errors_row_not_a_patient(tmp_path: Path) -> None:
    args = _ehr_csv(tmp_path, ["p1,0,HR,80", ",1,HR,81", "  ,2,HR,82", "p2,0,HR,70"])
    assert _cli(*args, "--out", tmp_path / "d")[0] == 0
    m = read_manifest(tmp_path / "d")
    assert sorted(m.patient_id) == ["p1", "p2"]
    errors = read_errors(tmp_path / "d")
    assert errors.loc[errors.reason.str.contains("empty id"), "count"].astype(int).sum() == 2


def test_physionet_duplicate_recordid_is_not_merged(stays: Path, tmp_path: Path) -> None:
    """A second file carrying the RecordID of a stay already read is rejected, not merged into it."""
    src = tmp_path / "set"
    shutil.copytree(stays, src)
    first = sorted(src.glob("*.txt"))[0]
    shutil.copy(first, src / "999999.txt")  # same RecordID line inside, another file name
    assert _cli("ingest", "ehr", stays, "--format", "physionet2012", "--out", tmp_path / "ref")[0] == 0
    assert _cli("ingest", "ehr", src, "--format", "physionet2012", "--out", tmp_path / "d")[0] == 0
    ref, dup = GridStore.load(tmp_path / "ref"), GridStore.load(tmp_path / "d")
    assert sorted(dup.case_ids) == sorted(ref.case_ids)
    i, j = list(ref.case_ids).index(first.stem), list(dup.case_ids).index(first.stem)
    assert dup.mask[j].sum() == ref.mask[i].sum()  # not doubled by the copy
    reasons = read_errors(tmp_path / "d").reason
    assert reasons.str.contains(f"RecordID {first.stem} was already read").any()


def test_physionet_duplicated_outcomes_are_one_errors_row_not_a_traceback(stays: Path, shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / "ehr/physionet2012/Outcomes-a.txt").read_text().splitlines()
    ids = {p.stem for p in stays.glob("*.txt")}
    mine = [line for line in lines[1:] if line.split(",")[0] in ids]
    a, b = mine[0].split(","), mine[1]
    flipped = ",".join(a[:-1] + ["1" if a[-1] == "0" else "0"])  # same RecordID, other outcome
    outcomes = tmp_path / "Outcomes.txt"
    outcomes.write_text("\n".join([lines[0], *mine, flipped, b]) + "\n")  # b twice with the same outcome
    rc, _ = _cli("ingest", "ehr", stays, "--format", "physionet2012", "--outcomes", outcomes, "--out", tmp_path / "d")
    assert rc == 0
    m = read_manifest(tmp_path / "d").set_index("case_id")
    assert pd.isna(m.loc[a[0], "label"]) and m.loc[b.split(",")[0], "label"] == b.split(",")[-1]
    assert read_errors(tmp_path / "d").reason.str.contains(f"RecordID {a[0]} is listed more than once").any()


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--step-hours", "0", "argument --step-hours: must be a finite number"),
    ("--hours", "nan", "argument --hours: must be a finite number"),
    ("--hours", "1e7", "argument --hours: must be a finite number in (0, 8760]"),
    ("--step-hours", "0.0001", "480000 time bins, more than the limit of 10000; raise --step-hours"),
    ("--seed", "-1", "argument --seed: must be from 0 to"),
    ("--seed", "99999999999999999999", "argument --seed: must be from 0 to"),
    ("--limit", "0", "argument --limit: must be from 1"),
    ("--val-fraction", "nan", "argument --val-fraction: must be a fraction in [0, 1)"),
])
def test_ehr_flags_are_range_checked_with_one_line(stays: Path, tmp_path: Path, flag: str, value: str, expected: str) -> None:
    rc, last = _cli("ingest", "ehr", stays, "--format", "physionet2012", "--out", tmp_path / "d", flag, value)
    assert rc == 2 and expected in last.replace("4.8e+05", "480000")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(("extra", "expected"), [
    (["--before-s", "-1"], "argument --before-s: must be a finite number in [0, 60]"),
    (["--after-s", "100000"], "argument --after-s: must be a finite number in [0, 60]"),
    (["--after-s", "nan"], "argument --after-s: must be a finite number"),
    (["--before-s", "0", "--after-s", "0.001"], "windows of 0 sample(s)"),
    (["--before-s", "30", "--after-s", "30"], "no cases could be read"),  # every beat too close to an edge of a 2-min cut
    (["--seed", "-1"], "argument --seed: must be from 0 to"),
])
def test_signal_runs_that_cut_nothing_exit_nonzero(shared_data: Path, tmp_path: Path, extra: list[str], expected: str) -> None:
    src = tmp_path / "rec"
    src.mkdir()
    import wfdb

    record = wfdb.rdrecord(str(shared_data / "signals/mitdb_ds1/101"), sampto=360 * 50)
    ann = wfdb.rdann(str(shared_data / "signals/mitdb_ds1/101"), "atr", sampto=360 * 50)
    wfdb.wrsamp("101", fs=record.fs, units=record.units, sig_name=record.sig_name, p_signal=record.p_signal,
                fmt=record.fmt, write_dir=str(src))
    wfdb.wrann("101", "atr", ann.sample, ann.symbol, write_dir=str(src))
    rc, last = _cli("ingest", "signals", src, "--format", "wfdb", "--out", tmp_path / "d", *extra)
    assert rc == 2 and expected in last


def test_signal_csv_inf_is_an_errors_row_not_a_window_value(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("t,who,a\n" + "".join(f"{i},w,{'inf' if i == 3 else '1e39' if i == 6 else i}\n" for i in range(12))
                   + "12,,5\n13, ,6\n")
    assert _cli("ingest", "signals", csv, "--format", "csv", "--time-col", "t", "--patient-col", "who",
                "--window", "2", "--out", tmp_path / "d")[0] == 0
    assert np.isfinite(np.asarray(load_windows(tmp_path / "d"))).all()
    assert set(read_manifest(tmp_path / "d").patient_id) == {"w"}
    reasons = read_errors(tmp_path / "d").set_index("reason")["count"].astype(int)
    assert reasons[reasons.index.str.contains("not finite")].sum() == 2
    assert reasons[reasons.index.str.contains("empty id")].sum() == 2


def test_all_nan_id_column_exits_nonzero_and_writes_no_manifest(tmp_path: Path) -> None:
    src = tmp_path / "tx.csv"
    pd.DataFrame({"tid": [np.nan] * 5, "amount": [1, 2, 3, 4, 5], "fee": [1, 1, 2, 2, 3]}).to_csv(src, index=False)
    rc, last = _cli("ingest", "transactions", src, "--id-col", "tid", "--out", tmp_path / "d")
    assert rc == 2 and "no transaction" in last
    assert not (tmp_path / "d" / "manifest.parquet").exists()


def test_transactions_inf_is_counted_in_errors_csv(tmp_path: Path) -> None:
    src = tmp_path / "tx.csv"
    src.write_text("tid,amount,fee\n1,5,1\n2,inf,2\n3,7,-inf\n4,8,3\n")
    assert _cli("ingest", "transactions", src, "--id-col", "tid", "--out", tmp_path / "d")[0] == 0
    errors = read_errors(tmp_path / "d")
    assert sorted(errors.loc[errors.reason.str.contains("infinite"), "column"]) == ["amount", "fee"]


@pytest.mark.parametrize("content", ["object", "empty", "strings"])
def test_bad_npz_arrays_are_one_line(tmp_path: Path, content: str) -> None:
    src = tmp_path / "x.npz"
    if content == "object":
        np.savez(src, train_images=np.array([object()] * 3, dtype=object))
    elif content == "empty":
        src.write_bytes(b"")
    else:
        np.savez(src, train_images=np.full((2, 4, 4), "a"))
    rc, last = _cli("ingest", "images", src, "--format", "npz", "--out", tmp_path / "d")
    assert rc == 2 and last.startswith("medssl: error:")


def test_npz_images_with_nan_pixels_are_skipped_and_counted(tmp_path: Path) -> None:
    images = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    images[1, 2, 3], images[3, 0, 0] = np.nan, np.inf
    np.savez(tmp_path / "x.npz", train_images=images, train_labels=np.arange(5))
    assert _cli("ingest", "images", tmp_path / "x.npz", "--format", "npz", "--out", tmp_path / "d")[0] == 0
    assert read_manifest(tmp_path / "d").case_id.tolist() == ["train:0", "train:2", "train:4"]
    assert read_errors(tmp_path / "d")["count"].astype(int).sum() == 2


def _imaging_dir(tmp_path: Path) -> Path:
    images = np.stack([np.full((8, 8), 10 * i, np.uint8) for i in range(4)])
    np.savez(tmp_path / "x.npz", train_images=images, train_labels=np.arange(4))
    assert _cli("ingest", "images", tmp_path / "x.npz", "--format", "npz", "--out", tmp_path / "d")[0] == 0
    return tmp_path / "d"


@pytest.mark.parametrize("index", [-1, -4, 4, 1.5])
def test_array_index_outside_the_array_never_reads_another_image(tmp_path: Path, index: float) -> None:
    data = _imaging_dir(tmp_path)
    m = read_manifest(data)
    m["array_index"] = m["array_index"].astype(float)
    m.loc[0, "array_index"] = index
    write_manifest(m, data)  # a hand-edited manifest
    with pytest.raises(DataError, match="array_index|outside"):
        ds = get_domain("imaging").make_dataset(data, read_manifest(data), None)
        ds[0]
        ds.__getitems__([0, 1])


@pytest.mark.parametrize("kind", ["ehr", "signals"])
def test_negative_row_pointer_is_refused(stays: Path, shared_data: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "d"
    if kind == "ehr":
        assert _cli("ingest", "ehr", stays, "--format", "physionet2012", "--out", out)[0] == 0
        column = "grid_row"
    else:
        assert _cli("ingest", "signals", shared_data / "signals/basicmotions/BasicMotions_TEST.ts", "--format", "ts",
                    "--out", out)[0] == 0
        column = "row"
    m = read_manifest(out)
    m.loc[0, column] = -1
    with pytest.raises(DataError, match=f"{column} -1 in row 0"):
        get_domain(kind).make_dataset(out, m, None)
