"""A re-ingest is atomic (issue 14, Build item 2): a crash at any point leaves DATA_DIR reading
as the old ingest or the new one, never a mix; readers refuse a manifest whose data files do
not belong to it.

Crash points are injected by making one step of the commit raise (and, for a kill, skipping
the clean-up a dying process never runs); one test kills a real `medssl ingest ehr` process
with SIGKILL at several points of a re-ingest.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import medssl.data.commit as commit
import medssl.data.manifest as manifest_module
from medssl.cli import main
from medssl.data import get_domain, read_errors, read_manifest, write_manifest
from medssl.data.ehr import GridStore
from medssl.data.record import read_record, recorded_file
from medssl.errors import DataError

P12 = "ehr/physionet2012/set-a"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _ingest(args: list[str], out: Path) -> int:
    return main(["-q", *args, "--out", str(out)])


def _state(data_dir: Path) -> tuple[pd.DataFrame, torch.Tensor]:
    """What pretrain/score see: the manifest and every item of the domain's dataset."""
    m = read_manifest(data_dir)
    ds = get_domain(m["domain"].iloc[0]).make_dataset(data_dir, m, None)
    return m, torch.stack([ds[i] for i in range(len(ds))])


def _same(a: tuple[pd.DataFrame, torch.Tensor], b: tuple[pd.DataFrame, torch.Tensor]) -> bool:
    try:
        pd.testing.assert_frame_equal(a[0], b[0])
    except AssertionError:
        return False
    return a[1].shape == b[1].shape and bool(torch.equal(a[1], b[1]))


@pytest.fixture(scope="module")
def sources(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[str], list[str]]]:
    """Per kind: (old ingest args, new ingest args) over different real cases."""
    root = tmp_path_factory.mktemp("src")
    files = sorted((shared_data / P12).glob("*.txt"))
    for name, part in (("a", files[:12]), ("b", files[40:60])):
        (root / name).mkdir()
        for f in part:
            shutil.copy(f, root / name / f.name)
    bm = shared_data / "signals/basicmotions"
    pay = shared_data / "transactions/paysim_sample.csv"
    head = pd.read_csv(pay)
    head.iloc[:400].to_csv(root / "pay_a.csv", index=False)
    head.iloc[400:1000].to_csv(root / "pay_b.csv", index=False)
    tx = ["--entity-col", "nameOrig", "--time-col", "step", "--label-col", "isFraud"]
    return {
        "ehr": (["ingest", "ehr", str(root / "a"), "--format", "physionet2012"],
                ["ingest", "ehr", str(root / "b"), "--format", "physionet2012", "--step-hours", "2"]),
        "signals": (["ingest", "signals", str(bm / "BasicMotions_TRAIN.ts"), "--format", "ts"],
                    ["ingest", "signals", str(bm / "BasicMotions_TEST.ts"), "--format", "ts", "--length", "50"]),
        "transactions": (["ingest", "transactions", str(root / "pay_a.csv"), *tx],
                         ["ingest", "transactions", str(root / "pay_b.csv"), *tx, "--history", "4"]),
    }


@pytest.fixture(scope="module")
def references(sources: dict[str, tuple[list[str], list[str]]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Each kind's old and new ingest, each done once, uninterrupted, into its own folder."""
    out: dict[str, dict[str, Path]] = {}
    for kind, (old, new) in sources.items():
        root = tmp_path_factory.mktemp(kind)
        assert _ingest(old, root / "old") == 0 and _ingest(new, root / "new") == 0
        out[kind] = {"old": root / "old", "new": root / "new"}
    return out


def _raise(*args: object, **kwargs: object) -> None:
    raise RuntimeError("injected crash")


# (module, attribute) made to raise; the step it stands for
CRASH_POINTS = {
    "before_manifest": (commit, "write_manifest"),  # data files written, manifest not yet
    "inside_manifest_write": (manifest_module, "sync_file"),  # temporary manifest written, not renamed
    "after_manifest": (commit, "_write"),  # manifest swapped, errors.csv/schema.json not yet
    "before_cleanup": (commit, "remove_stale"),  # everything written, old files not yet deleted
}


@pytest.mark.parametrize("killed", [False, True], ids=["exception", "killed"])
@pytest.mark.parametrize("point", list(CRASH_POINTS))
@pytest.mark.parametrize("kind", ["ehr", "signals", "transactions"])
def test_a_crash_at_any_point_leaves_the_old_or_the_new_ingest(
    kind: str, point: str, killed: bool, sources: dict, references: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = _state(references[kind]["old"]), _state(references[kind]["new"])
    data = tmp_path / "data"
    shutil.copytree(references[kind]["old"], data)
    module, name = CRASH_POINTS[point]
    with monkeypatch.context() as patch:
        patch.setattr(module, name, _raise)
        if killed:  # a killed process runs no clean-up: what it wrote stays behind
            patch.setattr(commit.IngestWriter, "abort", lambda self: None)
        with pytest.raises(RuntimeError, match="injected crash"):
            _ingest(sources[kind][1], data)
    now = _state(data)
    expect_new = point in ("after_manifest", "before_cleanup")
    assert _same(now, new if expect_new else old), f"{kind} after a crash {point} reads neither as the old nor the new ingest"
    same_errors = (references[kind]["old"] / "errors.csv").read_bytes() == (references[kind]["new"] / "errors.csv").read_bytes()
    if point == "after_manifest" and not same_errors:  # errors.csv still the old one: refused, never shown as the new run's
        with pytest.raises(DataError, match="written by another ingest"):
            read_errors(data)
    else:
        pd.testing.assert_frame_equal(read_errors(data), read_errors(references[kind]["new" if expect_new else "old"]))
    if not killed and not expect_new:  # an ordinary failure leaves DATA_DIR byte for byte as it was
        assert snapshot(data) == snapshot(references[kind]["old"])
    # the next ingest goes through and leaves only its own files (leftovers of the crash are gone)
    assert _ingest(sources[kind][1], data) == 0
    assert _same(_state(data), new)
    record = read_record(data)
    data_files = {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()} - {
        "manifest.parquet", "errors.csv", "schema.json", ".ingest.lock"}
    assert data_files == {f["path"] for f in record["files"].values()}


def test_kill_9_during_a_real_reingest_never_mixes(shared_data: Path, tmp_path: Path) -> None:
    """SIGKILL a `medssl ingest ehr` subprocess re-ingesting 300 other stays at several points."""
    files = sorted((shared_data / P12).glob("*.txt"))
    src_a, src_b = tmp_path / "a", tmp_path / "b"
    for src, part in ((src_a, files[:40]), (src_b, files[100:400])):
        src.mkdir()
        for f in part:
            shutil.copy(f, src / f.name)
    cmd = [sys.executable, "-m", "medssl", "-q", "ingest", "ehr", "--format", "physionet2012"]
    ref_old, ref_new = tmp_path / "ref_old", tmp_path / "ref_new"
    subprocess.run([*cmd, str(src_a), "--out", str(ref_old)], check=True)
    start = time.monotonic()
    subprocess.run([*cmd, str(src_b), "--out", str(ref_new)], check=True)
    duration = time.monotonic() - start
    old, new = _state(ref_old), _state(ref_new)
    rng = np.random.default_rng()
    points = sorted(rng.uniform(0.2, 1.1, size=4)) + [0.75, 0.95]
    seen = set()
    for fraction in points:
        data = tmp_path / "data"
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(ref_old, data)
        proc = subprocess.Popen([*cmd, str(src_b), "--out", str(data)])
        time.sleep(fraction * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = _state(data)
        assert _same(now, old) or _same(now, new), f"killed at {fraction:.2f} of the run: a mix of two ingests"
        seen.add("old" if _same(now, old) else "new")
        try:
            read_errors(data)
        except DataError as exc:  # killed between the manifest and errors.csv: refused, one line
            assert "written by another ingest" in str(exc) and "\n" not in str(exc)
    assert seen  # (which ones depends on timing; both are correct outcomes)


def test_old_manifest_beside_new_data_is_refused(references: dict, tmp_path: Path) -> None:
    """The probe's state (an old manifest next to a new grid) is refused with one line, also by pretrain."""
    data = tmp_path / "data"
    shutil.copytree(references["ehr"]["new"], data)
    shutil.copy(references["ehr"]["old"] / "manifest.parquet", data / "manifest.parquet")
    with pytest.raises(DataError, match="is missing but .*manifest.parquet was written with it"):
        _state(data)
    proc = subprocess.run([sys.executable, "-m", "medssl", "-q", "pretrain", "--data", str(data), "--out",
                           str(tmp_path / "run"), "--epochs", "1"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("medssl: error:") and "is missing" in proc.stderr


def test_a_data_file_of_another_ingest_is_refused(references: dict, tmp_path: Path) -> None:
    for kind, role, legacy in (("signals", "windows", "signals/windows.npy"), ("ehr", "grid", "ehr/grid.npz")):
        data = tmp_path / kind
        shutil.copytree(references[kind]["old"], data)
        target = recorded_file(data, role, legacy, "")
        shutil.copy(recorded_file(references[kind]["new"], role, legacy, ""), target)
        with pytest.raises(DataError, match="written by another ingest than"):
            _state(data)


def test_manifest_read_before_a_reingest_is_refused(references: dict, sources: dict, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(references["signals"]["old"], data)
    stale = read_manifest(data)
    assert _ingest(sources["signals"][1], data) == 0
    with pytest.raises(DataError, match="replaced by another ingest while this command was reading it"):
        get_domain("signals").make_dataset(data, stale, None)


def test_data_dirs_from_before_records_stay_readable_and_checked(references: dict, tmp_path: Path) -> None:
    """No record: the fixed names are read; a grid of other stays is still refused (case ids)."""
    data = tmp_path / "legacy"
    data.mkdir()
    m = read_manifest(references["ehr"]["old"])
    write_manifest(m, data)  # no record, as medssl wrote it before
    GridStore.load(references["ehr"]["old"]).save(data)  # ehr/grid.npz
    assert read_record(data) is None
    assert _same(_state(data), _state(references["ehr"]["old"]))
    GridStore.load(references["ehr"]["new"]).save(data)  # another ingest's grid beside the manifest
    with pytest.raises(DataError, match="holds other stays than its manifest"):
        _state(data)


def test_failed_reingest_leaves_the_data_dir_untouched(references: dict, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(references["ehr"]["old"], data)
    before = snapshot(data)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "1.txt").write_text("Time,Parameter,Value\n")
    assert _ingest(["ingest", "ehr", str(empty), "--format", "physionet2012"], data) == 2
    assert snapshot(data) == before
    assert os.listdir(data) == os.listdir(references["ehr"]["old"])


def test_a_second_ingest_into_the_same_data_dir_is_refused_while_one_runs(references: dict, sources: dict, tmp_path: Path) -> None:
    """Two ingests into one DATA_DIR would delete each other's files: the second waits its turn (refused)."""
    import fcntl

    data = tmp_path / "data"
    shutil.copytree(references["signals"]["old"], data)
    before = snapshot(data)
    with open(data / ".ingest.lock", "a") as held:  # what a running ingest holds
        fcntl.flock(held, fcntl.LOCK_EX)
        rc = _ingest(sources["signals"][1], data)
    assert rc == 2 and snapshot(data) == before
    assert _ingest(sources["signals"][1], data) == 0  # once released, it goes through


def test_an_edited_manifest_keeps_naming_its_data_files(references: dict, tmp_path: Path) -> None:
    """A user who relabels cases and writes the manifest back (write_manifest) keeps the record."""
    data = tmp_path / "data"
    shutil.copytree(references["ehr"]["old"], data)
    m = read_manifest(data)
    m["label"] = "x"
    write_manifest(m, data)
    assert read_record(data) == read_record(references["ehr"]["old"])
    assert len(_state(data)[1]) == len(m)
