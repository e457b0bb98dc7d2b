"""`medssl ingest signals` on real MIT-BIH records, BasicMotions .ts and CSV streams."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from medssl.cli import main
from medssl.data import get_domain, read_errors, read_manifest
from medssl.data.signals import AAMI_MAP, aami_class, load_windows, make_signal_dataset

RECORDS = ("101", "112")


def test_aami_mapping_table() -> None:
    assert AAMI_MAP == {
        "N": "N", "L": "N", "R": "N", "e": "N", "j": "N", "A": "S", "a": "S", "J": "S", "S": "S",
        "V": "V", "E": "V", "F": "F", "/": "Q", "f": "Q", "Q": "Q",
    }
    for non_beat in ("+", "~", "|", "x", "!", "[", "]", '"', "p", "t"):
        assert aami_class(non_beat) is None


@pytest.fixture(scope="module")
def mitdb(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Records 101 and 112, a header without its data file (113), a truncated .dat (114), a record
    without annotations (115: first 20 s only), a truncated .atr (116), all ingested once."""
    src = tmp_path_factory.mktemp("mitdb")
    root = shared_data / "signals/mitdb_ds1"
    for name in RECORDS:
        for ext in ("hea", "dat", "atr"):
            shutil.copy(root / f"{name}.{ext}", src)
    (src / "113.hea").write_text((root / "101.hea").read_text().replace("101", "113"))
    (src / "114.hea").write_text((root / "101.hea").read_text().replace("101", "114"))
    (src / "114.dat").write_bytes((root / "101.dat").read_bytes()[:100_000])
    (src / "115.hea").write_text((root / "101.hea").read_text().replace("101", "115").replace("650000", "7200"))
    (src / "115.dat").write_bytes((root / "101.dat").read_bytes()[: 7200 * 3])
    (src / "116.hea").write_text((root / "101.hea").read_text().replace("101", "116"))
    shutil.copy(root / "101.dat", src / "116.dat")
    (src / "116.atr").write_bytes((root / "101.atr").read_bytes()[:50])  # cut: wfdb reads the first beats silently
    out = tmp_path_factory.mktemp("beats") / "data"
    assert main(["-q", "ingest", "signals", str(src), "--format", "wfdb", "--out", str(out)]) == 0
    return src, out


def test_beat_counts_windows_and_labels(mitdb: tuple[Path, Path], shared_data: Path) -> None:
    src, out = mitdb
    m = read_manifest(out)
    windows = load_windows(out)
    assert windows.shape == (len(m), 2, 90 + 162) and windows.dtype == np.float32
    errors = read_errors(out)
    for name in RECORDS:
        ann = wfdb.rdann(str(src / name), "atr")
        n_samples = wfdb.rdheader(str(src / name)).sig_len
        beats = [(s, sym) for s, sym in zip(ann.sample, ann.symbol) if sym in AAMI_MAP]
        near_edge = [s for s, _ in beats if s < 90 or s + 162 > n_samples]
        rows = m[m.patient_id == name]
        assert len(rows) == len(beats) - len(near_edge)
        edge_rows = errors[errors.path.str.endswith(f"{name}.atr")]
        assert edge_rows["count"].astype(int).sum() == len(near_edge)
        assert rows.label.tolist() == [AAMI_MAP[sym] for s, sym in beats if s not in near_edge]
    # one window checked sample by sample against the record
    record = wfdb.rdrecord(str(src / "112"))
    row = m[m.patient_id == "112"].iloc[10]
    s = int(row["sample"])
    assert row.case_id == f"112:{s}"
    np.testing.assert_array_equal(windows[row["row"]], record.p_signal[s - 90:s + 162].T.astype(np.float32))
    assert m.groupby("patient_id").split.nunique().max() == 1


def test_rr_side_features_from_the_records_beat_times(mitdb: tuple[Path, Path]) -> None:
    """Every beat carries RR intervals computed from all the record's beats (also those dropped at the
    edges and Q beats), NaN where undefined; the dataset turns them into standardised constant channels."""
    src, out = mitdb
    m = read_manifest(out)
    ann = wfdb.rdann(str(src / "112"), "atr")
    beats = np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym in AAMI_MAP])
    rows = m[m.patient_id == "112"].reset_index(drop=True)
    i = int(np.searchsorted(beats, int(rows.loc[10, "sample"])))
    rr = np.diff(beats) / 360.0
    assert rows.loc[10, "rr_prev"] == pytest.approx(rr[i - 1])
    assert rows.loc[10, "rr_next"] == pytest.approx(rr[i])
    assert rows.loc[10, "rr_local"] == pytest.approx(rr[max(i - 10, 0):i].mean())
    assert rows.loc[10, "rr_record"] == pytest.approx(rr.mean())
    assert rows.loc[10, "rr_prev_ratio"] == pytest.approx(rr[i - 1] / rr.mean())
    assert rows.loc[10, "rr_prev_next"] == pytest.approx(rr[i - 1] / rr[i])
    first = rows.loc[rows["sample"] == beats[0]]  # the record's first beat, if its window fits: no previous beat
    assert first.empty or (np.isnan(first["rr_prev"]).all() and np.isfinite(first["rr_next"]).all())
    assert m.loc[m.patient_id == "115", "rr_prev"].isna().all()  # no annotations: no beat times
    ds = make_signal_dataset(out, m, None)
    k = len(ds.preprocessing["side_features"])
    assert k == 8 and ds.channels == 2 + k and get_domain("signals").encoder_kwargs(ds) == {"in_channels": 2 + k}
    row = int(np.flatnonzero((m.patient_id == "112").to_numpy())[10])
    x = ds[row]
    assert x.shape == (2 + k, 252) and torch.equal(x[2:], x[2:, :1].expand(-1, 252))
    j = ds.preprocessing["side_features"].index("rr_prev")
    want = (np.log(rows.loc[10, "rr_prev"]) - ds.preprocessing["side_mean"][j]) / ds.preprocessing["side_std"][j]
    assert x[2 + j, 0].item() == pytest.approx(float(np.clip(want, -5, 5)), rel=1e-4)  # clipped to +-5
    old = {key: v for key, v in ds.preprocessing.items() if not key.startswith("side_")}  # a checkpoint from before
    assert make_signal_dataset(out, m, old)[row].shape == (2, 252)


def test_bad_records_and_fixed_windows(mitdb: tuple[Path, Path]) -> None:
    _, out = mitdb
    m, errors = read_manifest(out), read_errors(out)
    by_file = {Path(p).name: r for p, r in zip(errors.path, errors.reason)}
    assert "113.hea" in by_file and "missing or truncated" in by_file["113.hea"]
    assert "114.hea" in by_file and "could not be read" in by_file["114.hea"]
    assert "116.atr" in by_file and "truncated" in by_file["116.atr"] and "116" not in set(m.patient_id)
    fixed = m[m.patient_id == "115"]  # no .atr: 7200 samples -> 28 windows of 252
    assert len(fixed) == 7200 // 252 and fixed.label.isna().all()
    assert fixed.case_id.tolist()[:2] == ["115:0", "115:252"]


def test_record_selection_and_clear_errors(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(shared_data / "signals/mitdb_ds1")
    assert main(["-q", "ingest", "signals", root, "--format", "wfdb", "--records", "999", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "999" in err and err.count("\n") == 1 and "Traceback" not in err
    out = tmp_path / "one"
    assert main(["-q", "ingest", "signals", root, "--format", "wfdb", "--max-records", "1", "--leads", "1",
                 "--before-s", "0.1", "--after-s", "0.2", "--out", str(out)]) == 0
    assert load_windows(out).shape[1:] == (1, 36 + 72) and set(read_manifest(out).patient_id) == {"101"}


def test_basicmotions_ts(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bm"
    assert main(["-q", "ingest", "signals", str(shared_data / "signals/basicmotions"), "--format", "ts", "--out", str(out)]) == 0
    m = read_manifest(out)
    assert len(m) == 80 and m.label.value_counts().to_dict() == {"Standing": 20, "Running": 20, "Walking": 20, "Badminton": 20}
    w = load_windows(out)
    assert w.shape == (80, 6, 100)
    first = int(m.loc[m.case_id == "BasicMotions_TRAIN:0", "row"].iloc[0])
    assert w[first, 0, :3].tolist() == pytest.approx([0.079106, 0.079106, -0.903497])
    assert m.set_index("case_id").loc["BasicMotions_TRAIN:0", "label"] == "Standing"
    ds = make_signal_dataset(out, m, None)
    train = w[m.row[m.split == "train"]]
    assert ds.preprocessing["mean"] == pytest.approx(train.mean(axis=(0, 2)).tolist(), rel=1e-5)
    x = ds[first]
    assert x.shape == (6, 100) and x[0, 0].item() == pytest.approx(
        (0.079106 - ds.preprocessing["mean"][0]) / ds.preprocessing["std"][0], rel=1e-5)
    assert get_domain("signals").encoder_kwargs(ds) == {"in_channels": 6}


def test_bad_ts_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "ts"
    src.mkdir()
    (src / "empty.ts").write_text("")
    (src / "truncated.ts").write_text("@problemName X\n@dimensions 2\n@classLabel true a b\n")
    (src / "text.ts").write_text("@dimensions 1\n@classLabel true a b\n@data\n1,2,x:a\n")
    (src / "good.ts").write_text("@dimensions 2\n@classLabel true a b\n@data\n1,2,3:4,5,6:a\n1,?,3:4,5,6:b\n7,8,9:1,2,3:b\n")
    out = tmp_path / "d"
    assert main(["-q", "ingest", "signals", str(src), "--format", "ts", "--out", str(out)]) == 0
    reasons = {Path(p).name: r for p, r in zip(*read_errors(out)[["path", "reason"]].to_numpy().T)}
    assert "no @data" in reasons["empty.ts"] and "no @data" in reasons["truncated.ts"]
    assert "not a number" in reasons["text.ts"] and "missing values" in reasons["good.ts"]
    m = read_manifest(out)
    assert m.case_id.tolist() == ["good:0", "good:2"] and m.label.tolist() == ["a", "b"]
    for bad in ("empty.ts", "good.ts"):
        (src / bad).unlink()
    assert main(["-q", "ingest", "signals", str(src), "--format", "ts", "--out", str(out)]) == 2
    assert "no cases could be read" in capsys.readouterr().err


def test_csv_streams(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["t,wearer,ax,ay,activity"]
    for who in ("w1", "w2"):
        for i in range(10):
            lines.append(f"{i},{who},{i},{-i},{'walk' if i < 6 else 'run'}")
    lines += ["oops,w1,1,1,run", "11,w2,abc,1,run"]
    csv = tmp_path / "watch.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "d"
    args = ["-q", "ingest", "signals", str(csv), "--format", "csv", "--time-col", "t", "--patient-col", "wearer",
            "--label-col", "activity", "--window", "4", "--stride", "2", "--out", str(out)]
    assert main(args) == 0
    m = read_manifest(out)
    assert len(m) == 8 and m.groupby("patient_id").size().to_dict() == {"w1": 4, "w2": 4}
    assert m.case_id.tolist()[:2] == ["watch:w1:0", "watch:w1:2"]
    assert m.label.tolist()[:4] == ["walk", "walk", "walk", "run"]
    w = load_windows(out)
    assert w.shape == (8, 2, 4) and w[1].tolist() == [[2, 3, 4, 5], [-2, -3, -4, -5]]
    reasons = set(read_errors(out).reason)
    assert any("unknown time format" in r for r in reasons) and any("not a number" in r for r in reasons)
    capsys.readouterr()
    before = (out / "errors.csv").read_bytes()
    assert main(args[:-2] + ["--channels", "ax,gz", "--out", str(out)]) == 2
    err = capsys.readouterr().err  # a failed re-ingest names the first reason and leaves DATA_DIR as it was
    assert "no cases could be read" in err and "--channels 'gz'" in err and "was left unchanged" in err
    assert (out / "errors.csv").read_bytes() == before and len(read_manifest(out)) == 8
    assert main(args[:6] + ["--out", str(out)]) == 2
    assert "--time-col" in capsys.readouterr().err


def test_csv_stream_window_labels_majority_ties_and_missing(tmp_path: Path) -> None:
    """Window label = most frequent non-empty value; a tie goes to the value seen first in the
    window; a window with no label at all gets None (what per-window value_counts gave)."""
    from medssl.data.manifest import ErrorLog
    from medssl.data.signals.csv_stream import read_stream_csv

    labels = ["b", "a", "a", "b", "", "", "", "", "c", "c", "b", "a"]
    csv = tmp_path / "s.csv"
    csv.write_text("t,x,lab\n" + "".join(f"{i},{i},{lab}\n" for i, lab in enumerate(labels)))
    windows, rows = read_stream_csv(csv, "t", 4, 2, ErrorLog(), label_col="lab")
    assert rows.start.tolist() == [0, 2, 4, 6, 8]
    # [b a a b] tie->b, [a b - -] tie->a, [- - - -] None, [- - c c] c, [c c b a] c
    assert rows.label.isna().tolist() == [False, False, True, False, False]
    assert rows.label.fillna("-").tolist() == ["b", "a", "-", "c", "c"]
    assert windows[:, 0, 0].tolist() == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("keep", [0, 100])
def test_truncated_windows_file_is_a_data_error(tmp_path: Path, keep: int) -> None:
    """An empty or cut-off signals/windows.npy raises DataError naming it (not ValueError/EOFError)."""
    from medssl.data.signals import save_windows
    from medssl.errors import DataError

    path = save_windows(tmp_path, np.ones((4, 2, 50), np.float32))
    assert load_windows(tmp_path).shape == (4, 2, 50)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(DataError, match="windows.npy could not be read"):
        load_windows(tmp_path)
