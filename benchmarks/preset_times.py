"""How long each domain preset (``configs/<domain>.yaml``) pretrains on this machine, as a user runs it.

For each domain: ``medssl ingest`` of the shared development data (as the README's loop does), then
``medssl pretrain --config configs/<preset>.yaml`` as a new process, either to the end (``--full``,
or for presets whose estimate is under ``--full-below`` minutes) or for ``--probe-steps`` steps, from
which the whole run is estimated: steps per epoch x epochs, capped by the preset's ``max_minutes``.
Reads the steps done from the run's ``metrics.csv``. Writes ``benchmarks/results/preset_times.json``.

    .venv/bin/python benchmarks/preset_times.py [--domains pneumoniamnist,physionet2012,mitdb,transactions]
        [--probe-steps 20] [--full-below 8] [--work /tmp/preset_times]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
PRESETS = {  # preset -> ingest arguments
    "pneumoniamnist": ["images", str(SHARED / "imaging" / "pneumoniamnist_trainval.npz"), "--format", "npz"],
    "physionet2012": ["ehr", str(SHARED / "ehr" / "physionet2012" / "set-a"), "--format", "physionet2012",
                      "--outcomes", str(SHARED / "ehr" / "physionet2012" / "Outcomes-a.txt")],
    "mitdb": ["signals", str(SHARED / "signals" / "mitdb_ds1"), "--format", "wfdb"],
    "transactions": ["transactions", str(SHARED / "transactions" / "ulb_creditcard_a.csv"),
                     "--id-col", "transaction_id", "--label-col", "Class"],
}


def medssl(*args: str) -> float:
    """Run ``medssl ARGS`` as a new process; its wall-clock seconds (exits with its stderr on failure)."""
    start = time.time()
    done = subprocess.run([str(Path(sys.executable).with_name("medssl")), "-q", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"medssl {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.time() - start


def train_rows(data: Path, cfg: dict) -> int:
    """Cases one pretraining epoch passes over: the train split, capped by ``limit_cases``."""
    manifest = pd.read_parquet(data / "manifest.parquet", columns=["split"])
    n = int((manifest["split"] == "train").sum()) or len(manifest)
    return min(n, cfg.get("limit_cases") or n)


def steps_done(run: Path) -> int:
    metrics = run / "metrics.csv"
    return int(pd.read_csv(metrics)["step"].max()) if metrics.exists() else 0


def measure(preset: str, work: Path, probe_steps: int, full_below: float, full: bool) -> dict:
    path = ROOT / "configs" / f"{preset}.yaml"
    cfg = yaml.safe_load(path.read_text())
    data = work / f"data_{preset}"
    if not (data / "manifest.parquet").exists():
        medssl("ingest", *PRESETS[preset], "--out", str(data))
    per_epoch = max(1, train_rows(data, cfg) // cfg.get("batch_size", 128))
    total = per_epoch * cfg.get("epochs", 10)
    probe = work / f"probe_{preset}"
    shutil.rmtree(probe, ignore_errors=True)
    seconds = medssl("pretrain", "--data", str(data), "--out", str(probe), "--config", str(path),
                     "--max-steps", str(probe_steps))
    rate = steps_done(probe) / seconds  # whole process: imports and start-up included
    estimate = total / rate / 60
    cap = cfg.get("max_minutes")
    row = {"preset": preset, "method": cfg.get("method"), "steps_planned": total, "max_minutes": cap,
           "probe_steps_per_s": rate, "estimated_minutes": min(estimate, cap or math.inf)}
    if full or estimate < full_below:
        run = work / f"full_{preset}"
        shutil.rmtree(run, ignore_errors=True)
        seconds = medssl("pretrain", "--data", str(data), "--out", str(run), "--config", str(path))
        row.update(measured_minutes=seconds / 60, steps_done=steps_done(run))
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", default=",".join(PRESETS))
    parser.add_argument("--probe-steps", type=int, default=20)
    parser.add_argument("--full-below", type=float, default=8.0, help="run presets estimated under this many minutes to the end")
    parser.add_argument("--full", action="store_true", help="run every preset to the end")
    parser.add_argument("--work", type=Path, default=Path("/tmp/preset_times"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [measure(p, args.work, args.probe_steps, args.full_below, args.full) for p in args.domains.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "preset_times.json"
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
