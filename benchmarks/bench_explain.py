"""Measure "why flagged" (``medssl score``'s ``explanation`` column) on real data, through the product
path: ``medssl ingest`` -> ``medssl pretrain --config configs/<domain>.yaml`` -> ``medssl score``
with and without ``--no-explain`` (whole processes, timed in one run: the cost ratio).

What it says, on ULB credit-card transactions (the 3,704 rows of ../shared/data, finding = fraud):
for each flagged fraud, is the column the explanation names first one of the 5 columns that
separate fraud best on the *train* split (univariate AUROC furthest from 0.5)? Against what a
user would write instead: the column with the largest robust z-score (median / IQR of the train
rows), and against chance (5 of the columns). On MIT-BIH DS1 beats (first ``--ecg-minutes`` of the
22 records): the cost, and which parts (time windows, RR side features) are named first.

Usage: ``.venv/bin/python benchmarks/bench_explain.py [--steps 100] [--ecg-minutes 10]``;
writes benchmarks/results/bench_explain.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from medssl.data import read_manifest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TOP = 5
FIRST_UNIT = re.compile(r"Most unusual: (.+?) \(percentile ")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_feedback_rerank import cut_ecg  # noqa: E402  (the same ECG cut as the re-ranking benchmark)


def cli(*argv: object) -> float:
    """One ``medssl`` process, as a user runs it; returns its wall time in seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medssl", "-q", *map(str, argv)], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def first_unit(text: object) -> str | None:
    found = FIRST_UNIT.match(text) if isinstance(text, str) else None
    return found.group(1) if found else None


def pretrain_and_score(work: Path, data_dir: Path, preset: str, steps: int) -> tuple[pd.DataFrame, dict]:
    run = work / "run"
    cli("pretrain", "--data", data_dir, "--out", run, "--config", ROOT / "configs" / preset, "--max-steps", steps,
        "--accelerator", "cpu", "--seed", 0)
    plain_s = cli("score", "--model", run / "checkpoint.pt", "--data", data_dir, "--out", work / "plain.parquet",
                  "--device", "cpu", "--no-explain")
    explain_s = cli("score", "--model", run / "checkpoint.pt", "--data", data_dir, "--out", work / "scores.parquet",
                    "--device", "cpu")
    scores = pd.read_parquet(work / "scores.parquet")
    cost = {"cases": len(scores), "flagged": int(scores["flagged"].sum()), "score_no_explain_s": round(plain_s, 1),
            "score_with_explain_s": round(explain_s, 1), "ratio": round(explain_s / plain_s, 2),
            "preset": f"configs/{preset}", "pretrain_steps": steps}
    return scores, cost


def ulb(work: Path, steps: int) -> dict:
    data_dir = work / "data"
    cli("ingest", "transactions", SHARED / "transactions" / "ulb_creditcard_a.csv", "--out", data_dir)
    scores, cost = pretrain_and_score(work, data_dir, "transactions.yaml", steps)
    manifest = read_manifest(data_dir)
    columns = [c for c in manifest.columns if re.fullmatch(r"V\d+|Amount", c)]
    fraud = manifest["label"].astype(str) == "1"
    train = manifest["split"].astype(str) == "train"
    auc = {c: abs(roc_auc_score(fraud[train], manifest.loc[train, c].astype(float)) - 0.5) for c in columns}
    best = sorted(columns, key=lambda c: -auc[c])[:TOP]
    x = manifest[columns].astype(float)
    med = x[train].median()
    iqr = (x[train].quantile(0.75) - x[train].quantile(0.25)).replace(0, 1.0)
    z_first = ((x - med) / iqr).abs().idxmax(axis=1)
    table = scores.merge(manifest[["case_id"]].assign(fraud=fraud.to_numpy(), z_first=z_first.to_numpy()), on="case_id")
    hits = table[table["flagged"] & table["fraud"]]
    occ_first = hits["explanation"].map(first_unit)
    return {**cost, "flagged_frauds": len(hits), "best_columns_on_train": best,
            "share_first_named_in_best5": {
                "medssl_explanation": round(float(occ_first.isin(best).mean()), 3),
                "largest_robust_z": round(float(hits["z_first"].isin(best).mean()), 3),
                "chance": round(TOP / len(columns), 3)},
            "first_named_counts": occ_first.value_counts().head(8).to_dict()}


def mitbih(work: Path, steps: int, minutes: float) -> dict:
    cut_ecg(work / "src", minutes)
    cli("ingest", "signals", work / "src", "--format", "wfdb", "--out", work / "data")
    scores, cost = pretrain_and_score(work, work / "data", "mitdb.yaml", steps)
    manifest = read_manifest(work / "data")
    table = scores.merge(manifest[["case_id", "label"]], on="case_id")
    flagged = table[table["flagged"]]
    named = flagged["explanation"].map(first_unit).fillna("(none)")
    kind = named.map(lambda u: "time window" if u.startswith("samples ") else ("none" if u == "(none)" else "RR feature"))
    return {**cost, "ecg_minutes_per_record": minutes,
            "first_named_kind_by_class": pd.crosstab(flagged["label"].astype(str), kind).to_dict(orient="index")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_explain"))
    ap.add_argument("--steps", type=int, default=100, help="pretraining steps per domain (default 100)")
    ap.add_argument("--ecg-minutes", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_explain.json")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    load_start = os.getloadavg()
    results = {"ulb_transactions": ulb(args.work / "ulb", args.steps)}
    print(json.dumps(results["ulb_transactions"], indent=1))
    results["mitbih_beats"] = mitbih(args.work / "mitbih", args.steps, args.ecg_minutes)
    print(json.dumps(results["mitbih_beats"], indent=1))
    out = {"benchmark": "bench_explain", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_start": load_start,
                       "load_end": os.getloadavg()},
           "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
