"""Re-run the reliability probe's cases through the CLI, as a careless or hostile user would.

Each case runs ``medssl ...`` as a new process (time limit per case: a hang is a failure) and
checks what a user must get: either success with a right result, or a non-zero exit with exactly
one stderr line and no traceback, and every input left byte for byte as it was. The cases are
the commands quoted in the "Reliability" issue (overwritten inputs, non-atomic re-ingest under
kill -9, forged model files, non-finite numbers, runs that produce nothing, tracebacks, hangs).
The review-store cases (SQL against the audit trail, PostgreSQL undo races, score-file import,
app rendering, login throttling) are real-server tests in tests/test_audit_trail.py,
tests/test_review_postgres.py, tests/test_review_store.py and tests/test_app*.py.

Data: real files from ../shared/data (PneumoniaMNIST, PhysioNet 2012 set-a, MIT-BIH, ULB cards).
Writes benchmarks/results/reliability_probe.json; exits 1 if any case fails.

Usage: ``.venv/bin/python benchmarks/reliability_probe.py [--work DIR] [--kills 6]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MEDSSL = [sys.executable, "-m", "medssl", "-q"]
LIMIT_S = 240


def tree_hash(*paths: Path) -> str:
    """One hash over every file under ``paths`` (names and bytes)."""
    h = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            h.update(str(f).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


class Probe:
    """Runs cases and keeps their outcomes."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work = work
        self.env = env
        self.results: list[dict] = []

    def run(self, args: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None) -> tuple[int | None, str, float]:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([*MEDSSL, *args], cwd=self.work, input=stdin, capture_output=True,
                                  timeout=LIMIT_S, env={**self.env, **(env or {})})
            return proc.returncode, proc.stderr.decode(errors="replace"), time.perf_counter() - t0
        except subprocess.TimeoutExpired:
            return None, f"no answer within {LIMIT_S} s (hang)", time.perf_counter() - t0

    def case(self, name: str, args: list[str], expect: str, keep: tuple[Path, ...] = (), stdin: bytes | None = None,
             check: Callable[[], str | None] | None = None, env: dict[str, str] | None = None) -> None:
        """``expect``: "error" (non-zero, one stderr line, no traceback) or "ok" (exit 0).
        ``keep``: inputs that must be unchanged; ``check``: returns a problem or None."""
        before = {str(p): tree_hash(p) for p in keep}
        rc, err, seconds = self.run(args, stdin, env)
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        problems = []
        if rc is None:
            problems.append("hang")
        elif expect == "error":
            if rc == 0:
                problems.append("exit 0")
            if len(lines) != 1 or "Traceback" in err:
                problems.append(f"{len(lines)} stderr lines{' with a traceback' if 'Traceback' in err else ''}")
        elif rc != 0:
            problems.append(f"exit {rc}: {lines[-1] if lines else ''}")
        changed = [p for p, h in before.items() if tree_hash(Path(p)) != h]
        if changed:
            problems.append(f"changed {changed}")
        if check is not None and not problems:
            found = check()
            if found:
                problems.append(found)
        self.results.append({"case": name, "command": "medssl " + " ".join(args), "expect": expect, "exit": rc,
                             "seconds": round(seconds, 1), "stderr_last_line": lines[-1] if lines else "",
                             "ok": not problems, "problems": problems})
        print(f"{'ok  ' if not problems else 'FAIL'} {name}: exit {rc}; {lines[-1][:140] if lines else ''}"
              f"{'  <- ' + '; '.join(problems) if problems else ''}", flush=True)


def errors_mention(path: Path, *words: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if not path.is_file():
            return f"{path} missing"
        text = path.read_text().lower()
        missing = [w for w in words if w.lower() not in text]
        return f"{path.name} does not mention {missing}" if missing else None
    return check


def setup(p: Probe) -> dict[str, Path]:
    """The data and runs the cases act on (real files, small cuts)."""
    w = p.work
    with np.load(SHARED / "imaging" / "pneumoniamnist_trainval.npz") as z:
        y = z["train_labels"].ravel()
        idx = np.r_[np.flatnonzero(y == 0)[:100], np.flatnonzero(y == 1)[:140]]
        np.savez(w / "cut.npz", train_images=z["train_images"][idx], train_labels=z["train_labels"][idx],
                 val_images=z["val_images"][:40], val_labels=z["val_labels"][:40])
    (w / "fast.yaml").write_text("epochs: 1\nbatch_size: 16\nencoder_options: {width: 8}\naccelerator: cpu\n")
    steps = [
        ["ingest", "images", "cut.npz", "--format", "npz", "--out", "cxr"],
        ["pretrain", "--data", "cxr", "--out", "pre", "--config", "fast.yaml"],
        ["finetune", "--checkpoint", "pre/checkpoint.pt", "--data", "cxr", "--out", "ft"],
        ["score", "--model", "ft/model.pt", "--data", "cxr", "--out", "scores.parquet"],
        ["ingest", "signals", str(SHARED / "signals" / "mitdb_ds1"), "--format", "wfdb", "--records", "101", "--out", "ecg"],
    ]
    for args in steps:
        rc, err, _ = p.run(args)
        if rc != 0:
            raise SystemExit(f"setup failed: medssl {' '.join(args)}: {err.strip()[-500:]}")
    set_a = sorted((SHARED / "ehr" / "physionet2012" / "set-a").glob("*.txt"))
    for name, files in (("stays_a", set_a[:60]), ("stays_b", set_a[60:180])):
        (w / name).mkdir()
        for f in files:
            shutil.copy(f, w / name / f.name)
    return {"cxr": w / "cxr", "model": w / "ft" / "model.pt", "ft": w / "ft", "ecg": w / "ecg", "pre": w / "pre"}


def overwrite_cases(p: Probe, d: dict[str, Path]) -> None:
    keep = (d["cxr"], d["model"])
    p.case("evaluate --out DATA_DIR/manifest.parquet", ["evaluate", "--model", "ft/model.pt", "--data", "cxr", "--out",
           "cxr/manifest.parquet"], "error", keep)
    for flag, target in (("--out", "cxr/manifest.parquet"), ("--out", "ft/model.pt")):
        p.case(f"score {flag} {target}", ["score", "--model", "ft/model.pt", "--data", "cxr", flag, target], "error", keep)
    for target in ("cxr/manifest.parquet", "ft/model.pt"):
        p.case(f"score --embeddings {target}", ["score", "--model", "ft/model.pt", "--data", "cxr", "--out", "s2.parquet",
               "--embeddings", target], "error", keep)
    p.case("finetune --out onto an existing run", ["finetune", "--checkpoint", "pre/checkpoint.pt", "--data", "cxr", "--out",
           "ft", "--seed", "3"], "error", (d["ft"],))


def signing_cases(p: Probe, d: dict[str, Path]) -> None:
    key = {"MEDSSL_MODEL_KEY": "probe site key"}
    rc, err, _ = p.run(["pretrain", "--data", "cxr", "--out", "pre_signed", "--config", "fast.yaml"], env=key)
    rc2, err2, _ = p.run(["finetune", "--checkpoint", "pre_signed/checkpoint.pt", "--data", "cxr", "--out", "ft_signed"], env=key)
    if rc or rc2:
        raise SystemExit(f"signed runs failed: {err[-300:]} {err2[-300:]}")
    from medssl.checkpoints import _digest

    for source, forged_name in (("ft_signed/model.pt", "forged_signed.pt"), ("ft/model.pt", "forged_plain.pt")):
        payload = torch.load(p.work / source, weights_only=True)
        payload["states"]["head"] = {k: -v for k, v in payload["states"]["head"].items()}  # the probe's negated head
        payload["digest"] = _digest(payload["kind"], payload["meta"], payload["states"], payload["tensors"])
        torch.save(payload, p.work / forged_name)
    p.case("score a forged (negated head, digest recomputed) model, site key set",
           ["score", "--model", "forged_signed.pt", "--data", "cxr", "--out", "forged.parquet"], "error", env=key)
    p.case("evaluate a forged model, site key set",
           ["evaluate", "--model", "forged_signed.pt", "--data", "cxr", "--out", "forged.json"], "error", env=key)
    p.case("score an unsigned model, site key set",
           ["score", "--model", "forged_plain.pt", "--data", "cxr", "--out", "forged.parquet"], "error", env=key)
    payload = torch.load(p.work / "ft" / "model.pt", weights_only=True)
    payload["kind"] = "encoder"  # kind outside the digest before
    torch.save(payload, p.work / "kind_flipped.pt")
    p.case("score a model whose kind was edited", ["score", "--model", "kind_flipped.pt", "--data", "cxr", "--out",
           "k.parquet"], "error")
    payload = torch.load(p.work / "ft" / "model.pt", weights_only=True)
    payload["meta"] = ["crafted", "meta"]
    payload["digest"] = _digest(payload["kind"], payload["meta"], payload["states"], payload["tensors"])
    torch.save(payload, p.work / "meta_list.pt")
    p.case("score a model with a crafted meta list", ["score", "--model", "meta_list.pt", "--data", "cxr", "--out",
           "m.parquet"], "error")


def number_cases(p: Probe, d: dict[str, Path]) -> None:
    w = p.work
    p.case("pretrain --lr inf", ["pretrain", "--data", "cxr", "--out", "r_inf", "--config", "fast.yaml", "--lr", "inf"], "error",
           check=lambda: "checkpoint written" if (w / "r_inf" / "checkpoint.pt").exists() else None)
    p.case("pretrain --lr 1e30 (loss becomes NaN)", ["pretrain", "--data", "cxr", "--out", "r_nan", "--config", "fast.yaml",
           "--lr", "1e30"], "error")
    rows = [f"p{i // 20},{i % 20},HR,{'inf' if i in (3, 25) else 60 + i % 7}" for i in range(60)]
    (w / "vitals.csv").write_text("patient,t,name,value\n" + "\n".join(rows) + "\n")
    p.case("ingest ehr --format csv with inf values", ["ingest", "ehr", "vitals.csv", "--format", "csv", "--patient-col",
           "patient", "--time-col", "t", "--variable-col", "name", "--value-col", "value", "--out", "ehr_inf"], "ok",
           check=errors_mention(w / "ehr_inf" / "errors.csv", "inf"))
    sig = pd.DataFrame({"t": np.arange(400), "x": np.sin(np.arange(400) / 5.0), "dev": ["d1"] * 200 + ["d2"] * 200})
    sig.loc[[7, 250], "x"] = np.inf
    sig.to_csv(w / "watch.csv", index=False)
    p.case("ingest signals --format csv with inf values", ["ingest", "signals", "watch.csv", "--format", "csv", "--time-col",
           "t", "--patient-col", "dev", "--window", "50", "--out", "sig_inf"], "ok",
           check=errors_mention(w / "sig_inf" / "errors.csv", "inf"))
    dup = w / "stays_dup"
    shutil.copytree(w / "stays_a", dup)
    first = sorted(dup.glob("*.txt"))[0]
    shutil.copy(first, dup / "copy_of_first.txt")  # a second file with the same RecordID
    p.case("physionet2012 with two stays of one RecordID", ["ingest", "ehr", "stays_dup", "--format", "physionet2012",
           "--out", "icu_dup"], "ok", check=errors_mention(w / "icu_dup" / "errors.csv", first.stem))
    (w / "vitals_empty_id.csv").write_text("patient,t,name,value\n,0,HR,60\n,1,HR,61\np1,0,HR,70\np1,1,HR,71\np2,0,HR,80\n")
    p.case("ingest ehr csv with empty patient ids", ["ingest", "ehr", "vitals_empty_id.csv", "--format", "csv",
           "--patient-col", "patient", "--time-col", "t", "--variable-col", "name", "--value-col", "value", "--out",
           "ehr_empty"], "ok", check=errors_mention(w / "ehr_empty" / "errors.csv", "patient"))
    hand = w / "cxr_hand"
    shutil.copytree(d["cxr"], hand)
    m = pd.read_parquet(hand / "manifest.parquet")
    if "array_index" in m.columns:
        m.loc[0, "array_index"] = -1
        m.to_parquet(hand / "manifest.parquet")
    p.case("score a hand-edited manifest with array_index -1", ["score", "--model", "ft/model.pt", "--data", "cxr_hand",
           "--out", "hand.parquet"], "error")


def empty_result_cases(p: Probe, d: dict[str, Path]) -> None:
    w = p.work
    mitdb = str(SHARED / "signals" / "mitdb_ds1")
    p.case("ingest signals --before-s -1", ["ingest", "signals", mitdb, "--format", "wfdb", "--records", "101",
           "--before-s", "-1", "--out", "ecg_neg"], "error")
    p.case("ingest signals --after-s 100000", ["ingest", "signals", mitdb, "--format", "wfdb", "--records", "101",
           "--after-s", "100000", "--out", "ecg_far"], "error")
    cards = pd.read_csv(SHARED / "transactions" / "ulb_creditcard_a.csv", nrows=300)
    cards["transaction_id"] = np.nan
    cards.to_csv(w / "cards_nan_ids.csv", index=False)
    p.case("ingest transactions with an all-NaN id column", ["ingest", "transactions", "cards_nan_ids.csv", "--id-col",
           "transaction_id", "--label-col", "Class", "--out", "cards_nan"], "error")
    gone = w / "cxr_gone"
    shutil.copytree(d["cxr"], gone)
    m = pd.read_parquet(gone / "manifest.parquet")
    if "path" in m.columns:  # point every case at a file that is not there
        m["path"] = [str(w / "missing" / f"{i}.npz") for i in range(len(m))]
        m.to_parquet(gone / "manifest.parquet")
    shutil.rmtree(gone / "cache", ignore_errors=True)
    p.case("score where every input is missing", ["score", "--model", "ft/model.pt", "--data", "cxr_gone", "--out",
           "gone.parquet"], "error", check=lambda: "score file written" if (w / "gone.parquet").exists() else None)


def traceback_cases(p: Probe, d: dict[str, Path]) -> None:
    w = p.work
    np.savez(w / "objects.npz", train_images=np.array([{"a": 1}, None], dtype=object), train_labels=np.array([0, 1]))
    np.savez(w / "empty.npz")
    for name in ("objects.npz", "empty.npz"):
        p.case(f"ingest images {name}", ["ingest", "images", name, "--format", "npz", "--out", f"img_{name[:-4]}"], "error")
    outcomes = w / "outcomes_dup.txt"
    src = (SHARED / "ehr" / "physionet2012" / "Outcomes-a.txt").read_text().splitlines()
    outcomes.write_text("\n".join(src[:61] + [src[1].rsplit(",", 1)[0] + ",1" if src[1].endswith(",0") else src[1].rsplit(",", 1)[0] + ",0"]) + "\n")
    p.case("physionet2012 with duplicated (conflicting) outcomes", ["ingest", "ehr", "stays_a", "--format", "physionet2012",
           "--outcomes", "outcomes_dup.txt", "--out", "icu_outdup"], "ok",
           check=errors_mention(w / "icu_outdup" / "errors.csv", src[1].split(",")[0]))
    ehr = ["ingest", "ehr", "stays_a", "--format", "physionet2012", "--out", "icu_flags"]
    for flags in (["--step-hours", "0"], ["--hours", "nan"], ["--hours", "1e7"], ["--step-hours", "0.0001"]):
        p.case("physionet2012 " + " ".join(flags), [*ehr, *flags], "error")
    p.case("ingest signals --after-s nan", ["ingest", "signals", str(SHARED / "signals" / "mitdb_ds1"), "--format", "wfdb",
           "--records", "101", "--after-s", "nan", "--out", "ecg_nan"], "error")
    (w / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    pre = ["pretrain", "--data", "cxr", "--out", "r_flags"]
    p.case("pretrain --config BINARY", [*pre, "--config", "binary.yaml"], "error")
    p.case("pretrain --seed -1", [*pre, "--seed", "-1"], "error")
    p.case("pretrain --seed 2**70", [*pre, "--seed", str(2**70)], "error")
    p.case("ingest images --seed -1", ["ingest", "images", "cut.npz", "--format", "npz", "--out", "cxr_seed", "--seed", "-1"], "error")
    if not torch.cuda.is_available():
        p.case("pretrain --accelerator gpu (no GPU)", [*pre, "--accelerator", "gpu"], "error")
        p.case("score --device cuda (no GPU)", ["score", "--model", "ft/model.pt", "--data", "cxr", "--out", "c.parquet",
               "--device", "cuda"], "error")
    p.case("label-efficiency --modes ''", ["label-efficiency", "--checkpoint", "pre/checkpoint.pt", "--data", "cxr", "--out",
           "le", "--modes", ""], "error")
    p.case("users add --password-stdin BINARY", ["users", "add", "alice", "--role", "clinician", "--password-stdin", "--db",
           f"sqlite:///{w / 'review.db'}"], "error", stdin=b"\xff\xfe\x00\x01binary")
    p.case("users add with a terminal escape in the name", ["users", "add", "ali\x1b[2Jce", "--role", "clinician", "--password-stdin", "--db",
           f"sqlite:///{w / 'review.db'}"], "error", stdin=b"a long enough password\n")
    (w / "wide.yaml").write_text("encoder_options: {width: 1000000}\n")
    p.case("pretrain with encoder width 1e6", [*pre, "--config", "wide.yaml"], "error")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p.case("score --engine ray --ray-address to a closed port", ["score", "--model", "ft/model.pt", "--data", "cxr", "--out",
           "ray.parquet", "--engine", "ray", "--ray-address", f"127.0.0.1:{port}"], "error")


def kill_cases(p: Probe, kills: int, seed: int = 0) -> None:
    """kill -9 a re-ingest of other stays at random points; the DATA_DIR must read as one ingest."""
    w = p.work
    base = ["ingest", "ehr", "--format", "physionet2012", "--out", "icu_kill"]
    rc, err, seconds = p.run([base[0], base[1], "stays_a", *base[2:]])
    if rc != 0:
        raise SystemExit(f"ingest failed: {err[-300:]}")
    full_rc, _, full_s = p.run([base[0], base[1], "stays_b", *base[2:]])  # time of a whole re-ingest
    rng = random.Random(seed)
    from medssl.data import get_domain, read_manifest

    outcomes = []
    for k in range(kills):
        src = "stays_a" if k % 2 else "stays_b"
        proc = subprocess.Popen([*MEDSSL, base[0], base[1], src, *base[2:]], cwd=w, env=p.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.2, max(0.3, full_s)))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        try:
            m = read_manifest(w / "icu_kill")
            ds = get_domain("ehr").make_dataset(w / "icu_kill", m, None)
            _ = ds[0], ds[len(ds) - 1]
            ids = set(m["case_id"].astype(str))
            expected = [{f.stem for f in (w / s).glob("*.txt")} for s in ("stays_a", "stays_b")]
            outcome = "reads old or new ingest" if any(ids <= e for e in expected) else "MIXED"
        except Exception as exc:  # refused with a message is acceptable; a mix read silently is not
            outcome = f"refused: {str(exc).splitlines()[0][:120]}"
        outcomes.append(outcome)
    mixed = [o for o in outcomes if o == "MIXED"]
    p.results.append({"case": f"kill -9 during an ehr re-ingest ({kills} random points)", "command": "medssl ingest ehr ...",
                      "expect": "old, new, or refused", "exit": None, "seconds": round(full_s, 1),
                      "stderr_last_line": "; ".join(outcomes), "ok": not mixed, "problems": mixed})
    print(f"{'ok  ' if not mixed else 'FAIL'} kill -9 re-ingest: {outcomes}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--kills", type=int, default=6)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="medssl_probe_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MEDSSL_PROGRESS_EVERY_S": "3600"}
    env.pop("MEDSSL_MODEL_KEY", None)
    env.pop("MEDSSL_MODEL_KEY_FILE", None)
    p = Probe(work, env)
    t0 = time.time()
    d = setup(p)
    for group in (overwrite_cases, signing_cases, number_cases, empty_result_cases, traceback_cases):
        group(p, d)
    kill_cases(p, args.kills)
    failed = [r for r in p.results if not r["ok"]]
    out = REPO / "benchmarks" / "results" / "reliability_probe.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)), "seconds": round(time.time() - t0),
                               "n_cases": len(p.results), "n_failed": len(failed), "cases": p.results}, indent=1) + "\n")
    print(f"{len(p.results) - len(failed)} of {len(p.results)} cases hold -> {out}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
