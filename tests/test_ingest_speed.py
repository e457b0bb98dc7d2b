"""`medssl ingest dicom` start-up and parallelism (issue 19, item 7), on real DICOM files.

Each run is a new Python process (what a user starts), observed through audit hooks (PEP 578):
which heavy modules a process holds when it reads its first DICOM file, whether the workers read
files while the folder walk is still going, and what a worker that dies on one file does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from sklearn.model_selection import train_test_split

from medssl.data import assign_patient_splits, read_errors, read_manifest

HEAVY = ("pandas", "pyarrow", "sklearn", "scipy", "torch", "lightning", "monai", "sqlalchemy")
REAL = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb.dcm", "rtdose.dcm", "rtplan.dcm")

# An audit hook, installed at start-up in every Python process of a run (as sitecustomize.py on
# PYTHONPATH: it reaches workers however they are started): the first time a process
# opens a file under $SRC it appends one JSON line to $READS_LOG: whether it is a worker (not the
# main process) and the heavy modules it holds then. A worker that opens crash.dcm dies at once
# (as on a native decoder crash).
SITECUSTOMIZE = """
import json, os, sys
HEAVY = {heavy!r}
_state = {{"read": False}}

def _hook(event, args):
    src = os.environ.get("SRC")
    if event != "open" or not src or not isinstance(args[0], str) or not args[0].startswith(src):
        return
    worker = str(os.getpid()) != os.environ.get("MAIN_PID")
    if worker and args[0].endswith("crash.dcm"):
        os._exit(1)
    if not _state["read"]:
        _state["read"] = True
        with open(os.environ["READS_LOG"], "a") as fh:
            fh.write(json.dumps({{"worker": worker, "heavy": sorted(m for m in HEAVY if m in sys.modules)}}) + "\\n")

sys.addaudithook(_hook)
""".format(heavy=HEAVY)

# Runs `medssl ingest dicom $SRC --out OUT [extra]` in a new `python -c` process. With WAIT, the
# folder walk pauses before it lists its second folder until some worker has read a file (at most
# 30 s) and prints whether one did.
DRIVER = """
import json, os, sys, time
out, wait, extra = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
os.environ["MAIN_PID"] = str(os.getpid())
log = os.environ["READS_LOG"]

def workers_read():
    return os.path.exists(log) and any(json.loads(line)["worker"] for line in open(log))

real_scandir = os.scandir
listed = []

def scandir(path=".", *a, **k):
    if wait and str(path).startswith(os.environ["SRC"]):
        listed.append(path)
        if len(listed) == 2:  # the walk is about to list its second folder
            deadline = time.monotonic() + 30
            while not workers_read() and time.monotonic() < deadline:
                time.sleep(0.02)
            print("OVERLAP", workers_read())
    return real_scandir(path, *a, **k)

os.scandir = scandir
from medssl.cli import main
code = main(["-q", "ingest", "dicom", os.environ["SRC"], "--out", out, *extra])
print("EXIT", code)
print("END", json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
""".format(heavy=HEAVY)


def _source(root: Path, names: tuple[str, ...] = REAL, sub: int = 2) -> Path:
    """Real pydicom test files: ``names`` in ``root/src`` and the first ``sub`` of them again in a sub-folder."""
    src = root / "src"
    (src / "later").mkdir(parents=True)
    for name in names:
        shutil.copy(get_testdata_file(name), src / name)
    for name in names[:sub]:
        shutil.copy(get_testdata_file(name), src / "later" / name)
    return src


def _run(tmp: Path, src: Path, wait: bool, *extra: str) -> tuple[list[dict], dict[str, str]]:
    """(first-read lines of every process, {"OVERLAP"/"EXIT"/"END": value}) of one driver run."""
    log, site = tmp / "reads.jsonl", tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "SRC": str(src.resolve()), "READS_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", DRIVER, str(tmp / "out"), "1" if wait else "0", *extra],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    said = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.split(" ", 1)[0] in
                ("OVERLAP", "EXIT", "END"))
    reads = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return reads, said


def test_no_heavy_import_before_the_first_file_is_read_and_no_scikit_learn_at_all(tmp_path: Path) -> None:
    """Workers fork holding only what decoding needs; the main process imports pandas/pyarrow for the
    manifest once every file is handed out, and never scikit-learn, SciPy or torch."""
    src = _source(tmp_path)
    reads, said = _run(tmp_path, src, False, "--workers", "2")
    assert said["EXIT"] == "0"
    workers = [r for r in reads if r["worker"]]
    assert workers and all(r["heavy"] == [] for r in workers), reads
    assert json.loads(said["END"]) == ["pandas", "pyarrow"]
    assert len(read_manifest(tmp_path / "out")) > 0


def test_in_process_ingest_reads_its_first_file_before_any_heavy_import(tmp_path: Path) -> None:
    src = _source(tmp_path)
    reads, said = _run(tmp_path, src, False, "--workers", "1")
    assert said["EXIT"] == "0" and reads == [{"worker": False, "heavy": []}]
    assert "sklearn" not in json.loads(said["END"])


def test_workers_decode_while_the_folder_walk_goes_on(tmp_path: Path) -> None:
    """The walk stops after the root folder until a worker has read a file: the pool must already be
    decoding the files found so far (before this change it started only once the walk was done)."""
    src = _source(tmp_path)
    reads, said = _run(tmp_path, src, True, "--workers", "2")
    assert said["OVERLAP"] == "True" and said["EXIT"] == "0"
    manifest, errors = read_manifest(tmp_path / "out"), read_errors(tmp_path / "out")
    found = set(manifest["path"]) | set(errors["path"])
    assert {str(p.resolve()) for p in src.rglob("*.dcm")} == found  # later/ too: the walk went on


def test_a_worker_that_dies_on_a_file_rejects_that_file_only(tmp_path: Path) -> None:
    """A worker killed while the walk is still going (crash.dcm is in the root folder): the files it
    held and those the walk finds afterwards are retried one by one; only crash.dcm is rejected."""
    src = _source(tmp_path)
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "crash.dcm")
    reads, said = _run(tmp_path, src, False, "--workers", "2")
    assert said["EXIT"] == "0"
    errors = read_errors(tmp_path / "out")
    crashed = errors[errors["reason"].str.contains("decoder crashed")]
    assert crashed["path"].tolist() == [str((src / "crash.dcm").resolve())]
    manifest = read_manifest(tmp_path / "out")
    assert {str(p.resolve()) for p in src.rglob("*.dcm")} == set(manifest["path"]) | set(errors["path"])
    assert str((src / "CT_small.dcm").resolve()) in set(manifest["path"])  # crash.dcm's twin decodes
    # rejected files are listed by path (duplicate copies after them), whatever order the workers finished in
    rejected = errors[~errors["reason"].str.startswith("duplicate")]["path"].tolist()
    assert len(rejected) >= 2 and rejected == sorted(rejected)


@pytest.mark.parametrize("n", [2, 3, 7, 20, 101, 1000])
@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 - 1])
def test_plain_split_draws_what_train_test_split_draws(n: int, seed: int) -> None:
    """The unlabelled split without scikit-learn gives the same ids in the same order."""
    from medssl.data.splits import _plain_split

    ids = np.array([f"p{i:04d}" for i in range(n)], dtype=object)
    for n_test in sorted({1, max(1, n // 7), n - 1}):
        want_a, want_b = train_test_split(ids, test_size=n_test, random_state=seed)
        got_a, got_b = _plain_split(ids, n_test, seed)
        assert got_a.tolist() == list(want_a) and got_b.tolist() == list(want_b)


def test_unlabelled_patient_splits_are_those_of_before() -> None:
    """Fixed values of assign_patient_splits (drawn with scikit-learn before this change)."""
    import pandas as pd

    df = pd.DataFrame({"patient_id": [f"p{i % 13}" for i in range(40)]})
    got = assign_patient_splits(df, seed=3).groupby(df["patient_id"]).first().to_dict()
    assert got == EXPECTED_SEED3


EXPECTED_SEED3 = {
    "p0": "train", "p1": "train", "p10": "train", "p11": "train", "p12": "train", "p2": "train", "p3": "train",
    "p4": "test", "p5": "val", "p6": "test", "p7": "train", "p8": "train", "p9": "val",
}


def test_every_command_is_found_by_its_name_so_main_imports_only_its_module() -> None:
    """`main` registers only the named command's module; a module whose name differs from its
    command would silently fall back to importing all of them."""
    from medssl.commands.main import COMMANDS, _named_command, build_parser, command_name

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(command_name(m) for m in COMMANDS) == sorted(sub.choices)
    assert _named_command(["-q", "--threads", "2", "ingest", "dicom", "x"]) == "medssl.commands.ingest"
    assert _named_command(["--help"]) is None and _named_command(["bogus"]) is None


def test_a_users_unguarded_script_calling_the_cli_runs_once(tmp_path: Path) -> None:
    """A script without `if __name__ == "__main__"` that calls medssl.cli.main: the workers are forked
    explicitly (with a forkserver or spawn, Python 3.14's default on Linux, each worker would run the
    script again, ingest included: 12 runs here when tried)."""
    src = _source(tmp_path)
    script = tmp_path / "my_ingest.py"
    script.write_text(
        "from medssl.cli import main\n"
        "print('RAN', flush=True)\n"
        f"main(['-q', 'ingest', 'dicom', {str(src)!r}, '--out', {str(tmp_path / 'out')!r}, '--workers', '2'])\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("RAN") == 1
    assert len(read_manifest(tmp_path / "out")) > 0
