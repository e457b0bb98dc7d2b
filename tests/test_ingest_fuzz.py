"""Fuzz every `medssl ingest` (issue 14, Build item 8): hostile flag values and input files.

For every example: the exit code is 0 or a documented error code (2 for bad input, 1 for a file
the system refuses); on failure the last stderr line is one `medssl...: error:` line and nothing
is a traceback; and the DATA_DIR a good earlier ingest left there is byte for byte untouched. On
success DATA_DIR reads back (manifest, errors.csv, the domain's dataset). Examples are drawn
with a fixed seed (``derandomize``) so CI runs the same cases every time.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from medssl.cli import main
from medssl.data import get_domain, read_errors, read_manifest

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ERROR_CODES = {1, 2}
NUMBERS = st.one_of(
    st.sampled_from(["nan", "-nan", "inf", "-inf", "-1", "0", "-0", "1", "2", "0.5", "1e7", "1e308", "-1e308",
                     "1e-300", "99999999999999999999", "4294967295", "0x10", "", " ", "abc", "3.0", "1_000"]),
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``medssl -q ARGV`` in-process: (exit code, stderr). Anything but SystemExit propagates."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(["-q", *argv])
        except SystemExit as exc:  # argparse: usage error (2) or --help (0)
            rc = int(exc.code or 0)
    return rc, err.getvalue()


def check_run(argv: list[str], good: Path) -> int:
    """Run ``argv --out COPY_OF_GOOD`` and assert the contract; returns the exit code."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(good, data)
        before = snapshot(data)
        rc, err = run_cli([*argv, "--out", str(data)])
        assert "Traceback" not in err, err
        if rc == 0:
            m = read_manifest(data)
            read_errors(data)
            assert len(m) > 0
            if m["domain"].iloc[0] in ("ehr", "signals", "transactions"):
                ds = get_domain(m["domain"].iloc[0]).make_dataset(data, m, None)
                assert np.isfinite(ds[0].numpy()).all()
        else:
            assert rc in ERROR_CODES, (rc, err)
            last = err.strip().splitlines()[-1]
            assert last.startswith(("medssl: error:", "medssl ingest")) and ": error:" in last, err
            assert snapshot(data) == before, f"a failed ingest changed DATA_DIR: {argv}"
        return rc


@pytest.fixture(scope="module")
def inputs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real inputs of every kind, and a good DATA_DIR ingested from each."""
    root = tmp_path_factory.mktemp("fuzz")
    stays = root / "stays"
    stays.mkdir()
    for f in sorted((shared_data / "ehr/physionet2012/set-a").glob("*.txt"))[:5]:
        shutil.copy(f, stays / f.name)
    long = pd.concat([pd.read_csv(f).assign(pid=f.stem) for f in sorted(stays.glob("*.txt"))])
    long.to_csv(root / "long.csv", index=False)
    import wfdb

    rec = root / "wfdb"
    rec.mkdir()
    record = wfdb.rdrecord(str(shared_data / "signals/mitdb_ds1/101"), sampto=360 * 20)
    ann = wfdb.rdann(str(shared_data / "signals/mitdb_ds1/101"), "atr", sampto=360 * 20)
    wfdb.wrsamp("101", fs=record.fs, units=record.units, sig_name=record.sig_name, p_signal=record.p_signal,
                fmt=record.fmt, write_dir=str(rec))
    wfdb.wrann("101", "atr", ann.sample, ann.symbol, write_dir=str(rec))
    stream = pd.DataFrame({"t": np.arange(200), "who": np.repeat(["a", "b"], 100),
                           "x": np.sin(np.arange(200) / 5), "y": np.cos(np.arange(200) / 7)})
    stream.to_csv(root / "stream.csv", index=False)
    images = np.load(shared_data / "imaging/pneumoniamnist_trainval.npz")
    np.savez(root / "small.npz", train_images=images["train_images"][:20], train_labels=images["train_labels"][:20],
             val_images=images["val_images"][:6], val_labels=images["val_labels"][:6])
    pd.read_csv(shared_data / "transactions/paysim_sample.csv").iloc[:200].to_csv(root / "pay.csv", index=False)
    dicom = root / "dicom"
    dicom.mkdir()
    for name in ("MR_small.dcm", "CT_small.dcm"):
        shutil.copy(get_testdata_file(name), dicom / name)
    paths = {"stays": stays, "long": root / "long.csv", "wfdb": rec, "stream": root / "stream.csv",
             "ts": shared_data / "signals/basicmotions/BasicMotions_TEST.ts", "npz": root / "small.npz",
             "pay": root / "pay.csv", "dicom": dicom}
    for kind, args in BASE.items():
        assert run_cli([*args(paths), "--out", str(root / f"good_{kind}")])[0] == 0, kind
        paths[f"good_{kind}"] = root / f"good_{kind}"
    return paths


BASE = {  # the command of a good run per input, SRC from ``inputs``
    "p12": lambda p: ["ingest", "ehr", str(p["stays"]), "--format", "physionet2012"],
    "ehr_csv": lambda p: ["ingest", "ehr", str(p["long"]), "--format", "csv", "--patient-col", "pid",
                          "--time-col", "Time", "--variable-col", "Parameter", "--value-col", "Value"],
    "wfdb": lambda p: ["ingest", "signals", str(p["wfdb"]), "--format", "wfdb"],
    "ts": lambda p: ["ingest", "signals", str(p["ts"]), "--format", "ts"],
    "stream": lambda p: ["ingest", "signals", str(p["stream"]), "--format", "csv", "--time-col", "t",
                         "--patient-col", "who", "--window", "20"],
    "npz": lambda p: ["ingest", "images", str(p["npz"]), "--format", "npz"],
    "transactions": lambda p: ["ingest", "transactions", str(p["pay"]), "--entity-col", "nameOrig"],
    "dicom": lambda p: ["ingest", "dicom", str(p["dicom"]), "--workers", "1"],
}
FLAGS = {  # the numeric flags of each command
    "p12": ["--hours", "--step-hours", "--max-variables", "--limit", "--val-fraction", "--test-fraction", "--seed"],
    "ehr_csv": ["--hours", "--step-hours", "--max-variables", "--val-fraction", "--test-fraction", "--seed"],
    "wfdb": ["--before-s", "--after-s", "--leads", "--max-records", "--seed", "--val-fraction"],
    "ts": ["--length", "--seed", "--test-fraction"],
    "stream": ["--window", "--stride", "--seed", "--val-fraction"],
    "npz": ["--seed", "--val-fraction", "--test-fraction", "--workers"],
    "transactions": ["--history", "--header-row", "--max-categories", "--seed", "--val-fraction", "--test-fraction"],
    "dicom": ["--workers"],
}


@pytest.mark.parametrize("kind", list(BASE))
def test_fuzzed_flags(kind: str, inputs: dict[str, Path]) -> None:
    @FUZZ
    @given(st.lists(st.tuples(st.sampled_from(FLAGS[kind]), NUMBERS), min_size=1, max_size=3))
    def run(flags: list[tuple[str, str]]) -> None:
        argv = BASE[kind](inputs)
        for flag, value in flags:
            argv += [f"{flag}={value}"]  # "=": a value starting with "-" stays the flag's value
        check_run(argv, inputs[f"good_{kind}"])

    run()


def _damaged(draw: st.DrawFn, good: bytes) -> bytes:
    """``good`` truncated, with flipped bytes, replaced by garbage, or empty."""
    how = draw(st.sampled_from(["truncate", "flip", "garbage", "empty", "header_only"]))
    if how == "truncate":
        return good[: draw(st.integers(0, max(0, len(good) - 1)))]
    if how == "flip":
        data = bytearray(good)
        for offset in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=6)):
            data[offset] ^= draw(st.integers(1, 255))
        return bytes(data)
    if how == "garbage":
        return draw(st.binary(min_size=1, max_size=2048))
    if how == "header_only":
        return good.split(b"\n", 1)[0] + b"\n"
    return b""


CSV_CELLS = st.one_of(st.sampled_from(["", " ", "nan", "inf", "-inf", "NaN", "1e39", "-1", "0", "00:61", "12:00",
                                       "2024-13-45", "x", "\u00e9", '"', ",", "1,5"]),
                      st.floats(allow_nan=True).map(repr), st.text(max_size=6))


@st.composite
def text_table(draw: st.DrawFn, columns: list[str]) -> bytes:
    """A CSV with the expected or random column names and hostile cells."""
    cols = columns if draw(st.booleans()) else draw(st.lists(st.sampled_from(columns + ["a", "b", ""]), min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(CSV_CELLS, min_size=len(cols), max_size=len(cols)), max_size=12))
    return pd.DataFrame(rows, columns=list(cols) if rows else None).to_csv(index=False).encode() if rows \
        else (",".join(cols) + "\n").encode()


def _file_case(kind: str, inputs: dict[str, Path]) -> tuple[Path, str]:
    """The file of ``kind``'s input that gets damaged (inside a copy of its source), and its role."""
    return {"p12": (inputs["stays"], "folder"), "ehr_csv": (inputs["long"], "file"), "wfdb": (inputs["wfdb"], "folder"),
            "ts": (inputs["ts"], "file"), "stream": (inputs["stream"], "file"), "npz": (inputs["npz"], "file"),
            "transactions": (inputs["pay"], "file"), "dicom": (inputs["dicom"], "folder")}[kind]


@pytest.mark.parametrize("kind", list(BASE))
def test_fuzzed_input_files(kind: str, inputs: dict[str, Path]) -> None:
    src, role = _file_case(kind, inputs)
    columns = {"p12": ["Time", "Parameter", "Value"], "ehr_csv": ["Time", "Parameter", "Value", "pid"],
               "stream": ["t", "who", "x", "y"], "transactions": ["step", "type", "amount", "nameOrig", "isFraud"]}

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / src.name
            if role == "folder":
                shutil.copytree(src, copy)
                victims = sorted(p for p in copy.iterdir() if p.is_file())
                victim = victims[data.draw(st.integers(0, len(victims) - 1))]
            else:
                shutil.copy(src, copy)
                victim = copy
            if kind in columns and data.draw(st.booleans()):
                payload = data.draw(text_table(columns[kind]))
            else:
                payload = data.draw(st.composite(lambda draw: _damaged(draw, victim.read_bytes()))())
            victim.write_bytes(payload)
            inputs_copy = {**inputs, _key(kind): copy}
            check_run(BASE[kind](inputs_copy), inputs[f"good_{kind}"])

    run()


def _key(kind: str) -> str:
    return {"p12": "stays", "ehr_csv": "long", "wfdb": "wfdb", "ts": "ts", "stream": "stream", "npz": "npz",
            "transactions": "pay", "dicom": "dicom"}[kind]
