"""Measure feedback re-ranking (medssl.review.rerank) on real data, through the product path:
``medssl ingest`` -> ``medssl pretrain --config configs/<domain>.yaml`` (the domain's preset) ->
``medssl score --embeddings`` -> ``import_scores`` into a SQLite review store -> a simulated reviewer
decides the queue's top K cases by their reference label (confirm a finding, dismiss a false alarm)
-> ``rerank_cases``. Reported per domain and K: AUPRC of the remaining (undecided) cases against
their reference labels in the plain anomaly order and in the re-ranked order (the re-ranking sees
the decisions only, never the reference labels).

Data: ULB credit-card transactions (all 3,704 rows of ../shared/data, finding = fraud), MIT-BIH
DS1 (the first ``--ecg-minutes`` of each of the 22 records, one case per beat, finding = any AAMI
class but N), PhysioNet 2012 set A (3,996 ICU stays, finding = in-hospital death) and
PneumoniaMNIST train+val (finding = pneumonia, the majority class: re-ranking there is a check that
it does no harm rather than a search for rare findings). Writes benchmarks/results/bench_feedback_rerank.json.

Usage: ``.venv/bin/python benchmarks/bench_feedback_rerank.py [--steps 100] [--ecg-minutes 10] [--domains ulb,mitbih,...]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import average_precision_score

from medssl.data import read_manifest
from medssl.review import add_user, import_scores, list_queue, make_engine, record_decision, rerank_cases
from medssl.review.embeddings import read_embeddings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DS1 = ("101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230").split()
DECISIONS = (10, 20, 50)


def cli(*argv: object) -> None:
    """One ``medssl`` process, as a user runs it."""
    cmd = [sys.executable, "-m", "medssl", "-q", *map(str, argv)]
    subprocess.run(cmd, check=True, cwd=ROOT)


def cut_ecg(src: Path, minutes: float) -> None:
    import wfdb

    src.mkdir(parents=True, exist_ok=True)
    n = int(minutes * 60 * 360)
    for name in DS1:
        record = str(SHARED / "signals" / "mitdb_ds1" / name)
        wfdb.rdrecord(record, sampto=n, physical=False).wrsamp(write_dir=str(src))
        ann = wfdb.rdann(record, "atr", sampto=n)
        wfdb.wrann(name, "atr", ann.sample, ann.symbol, subtype=ann.subtype, chan=ann.chan, num=ann.num,
                   aux_note=ann.aux_note, fs=ann.fs, write_dir=str(src))


def measure(work: Path, data_dir: Path, preset: str, steps: int, is_finding) -> dict:
    run, scores, emb = work / "run", work / "scores.parquet", work / "embeddings.parquet"
    t0 = time.perf_counter()
    cli("pretrain", "--data", data_dir, "--out", run, "--config", ROOT / "configs" / preset, "--max-steps", steps,
        "--accelerator", "cpu", "--seed", 0)
    cli("score", "--model", run / "checkpoint.pt", "--data", data_dir, "--out", scores, "--embeddings", emb,
        "--device", "cpu")
    pipeline_s = time.perf_counter() - t0
    manifest = read_manifest(data_dir)
    finding = dict(zip(manifest["case_id"].astype(str), is_finding(manifest["label"].astype(str))))
    ids, matrix = read_embeddings(emb)
    scored = pd.read_parquet(scores, columns=["case_id", "anomaly_score"])
    scored["finding"] = scored["case_id"].map(finding).astype(bool)
    rows = []
    for k in DECISIONS:
        db = work / f"review-{k}.db"
        db.unlink(missing_ok=True)
        engine = make_engine(f"sqlite:///{db}")
        add_user(engine, "bench", "clinician", "bench-password")
        import_scores(engine, scores, data_dir)
        top = list_queue(engine, page_size=k).rows["case_id"].tolist()
        for case_id in top:
            record_decision(engine, case_id, "bench", "confirm" if finding[case_id] else "dismiss")
        t1 = time.perf_counter()
        result = rerank_cases(engine, ids, matrix)
        rerank_s = time.perf_counter() - t1
        table = result.table.merge(scored, on="case_id")
        rest = table[~table["case_id"].isin(top)]
        plain = average_precision_score(rest["finding"], rest["anomaly_score"])
        reranked = average_precision_score(rest["finding"], rest["reranked"])
        rows.append({"decisions": k, "confirmed": result.n_confirmed, "dismissed": result.n_dismissed,
                     "remaining": len(rest), "remaining_findings": int(rest["finding"].sum()),
                     "auprc_anomaly_order": round(plain, 4), "auprc_reranked": round(reranked, 4),
                     "gain": round(reranked - plain, 4), "rerank_seconds": round(rerank_s, 2)})
        print(f"  {k} decisions ({result.n_confirmed} confirmed): anomaly order {plain:.3f}, re-ranked {reranked:.3f}")
    return {"cases": len(scored), "findings": int(scored["finding"].sum()), "preset": f"configs/{preset}",
            "pretrain_steps": steps, "pretrain_and_score_seconds": round(pipeline_s, 1), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_feedback_rerank"))
    ap.add_argument("--steps", type=int, default=100, help="pretraining steps per domain (default 100)")
    ap.add_argument("--ecg-minutes", type=float, default=10.0)
    ap.add_argument("--domains", default="ulb,mitbih,physionet2012,pneumoniamnist",
                    help="comma-separated: ulb, mitbih, physionet2012, pneumoniamnist (default all)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_feedback_rerank.json")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)  # a fresh product path each run (pretrain refuses an existing run)
    args.work.mkdir(parents=True)
    results = {}
    load_start = os.getloadavg()
    wanted = set(args.domains.split(","))

    if "ulb" in wanted:
        print("ULB transactions")
        ulb = args.work / "ulb"
        cli("ingest", "transactions", SHARED / "transactions" / "ulb_creditcard_a.csv", "--out", ulb / "data")
        results["ulb_transactions"] = measure(ulb, ulb / "data", "transactions.yaml", args.steps, lambda s: s == "1")

    if "mitbih" in wanted:
        print("MIT-BIH DS1 beats")
        ecg = args.work / "mitbih"
        cut_ecg(ecg / "src", args.ecg_minutes)
        cli("ingest", "signals", ecg / "src", "--format", "wfdb", "--out", ecg / "data")
        results["mitbih_beats"] = measure(ecg, ecg / "data", "mitdb.yaml", args.steps, lambda s: s != "N")
        results["mitbih_beats"]["ecg_minutes_per_record"] = args.ecg_minutes

    if "physionet2012" in wanted:
        print("PhysioNet 2012 ICU stays (finding = in-hospital death)")
        icu = args.work / "physionet2012"
        cli("ingest", "ehr", SHARED / "ehr" / "physionet2012" / "set-a", "--format", "physionet2012", "--outcomes",
            SHARED / "ehr" / "physionet2012" / "Outcomes-a.txt", "--out", icu / "data")
        results["physionet2012_stays"] = measure(icu, icu / "data", "physionet2012.yaml", args.steps, lambda s: s == "1")

    if "pneumoniamnist" in wanted:
        print("PneumoniaMNIST X-rays (finding = pneumonia)")
        cxr = args.work / "pneumoniamnist"
        cli("ingest", "images", SHARED / "imaging" / "pneumoniamnist_trainval.npz", "--format", "npz", "--out", cxr / "data")
        results["pneumoniamnist_xrays"] = measure(cxr, cxr / "data", "pneumoniamnist.yaml", args.steps, lambda s: s == "1")

    out = {"benchmark": "bench_feedback_rerank", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_start": load_start,
                       "load_end": os.getloadavg()},
           "protocol": "the queue's top K cases decided by reference label; AUPRC of the remaining cases",
           "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
