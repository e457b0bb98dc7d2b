"""Few-label beat classification on MIT-BIH DS1, unseen records: 1% of the train beats' labels.

What runs (every medssl figure through the CLI with shipped defaults, as a user runs it):

1. ``medssl ingest signals mitdb_ds1 --format wfdb --val-fraction 0 --test-fraction 0.25 --seed S``:
   22 records, one case per annotated beat (2 leads x 252 samples + the RR side features the
   ingest computes), AAMI label N/S/V/F/Q, patient = record, so the ingest's patient-level split is
   a split BY RECORD: 25% of the records (6) are held out as test. Split rule (fixed, reads label
   counts only, never a model's result): S is the first ingest seed (0, 1, ...) whose train and
   test records both hold at least 10 beats of each of N, S, V and F;
2. ``medssl pretrain --data D --out R --config configs/mitdb_micle.yaml`` with the preset and a step
   budget (``--pretrain-steps``, passed as the API's ``max_steps``; the preset's epochs otherwise);
   train records only, labels unused;
3. for seeds 0..K-1: ``medssl finetune --checkpoint R/checkpoint.pt --data D --out F --label-fraction
   0.01 --seed K`` (defaults: label unit ``case`` for signals = 1% of the labelled train beats, spread
   over the train records in proportion; mode auto = the signals recipe ``rr_hybrid``, which chooses
   embedding / RR / embedding+RR by record-grouped CV on those labelled beats) and
   ``medssl evaluate --model F/model.pt --data D --out report.json`` (the test records);
4. the baseline a user would write instead, on the very same labelled beats (the draw reproduced
   with ``medssl.train.labels.draw_labelled_subset``, as finetune calls it): the 8 RR columns of the
   manifest (NaN -> the labelled beats' median) -> scikit-learn ``LogisticRegression(class_weight=
   "balanced")`` on standardised columns, and ``HistGradientBoostingClassifier(class_weight="balanced")``;
   F1 per class on the same test beats;
5. table -> benchmarks/results/label_efficiency_mitbih.json, printed.

Acceptance (issue 15): medssl V F1 >= 0.80 and S F1 >= 0.50 on the held-out records, mean over 3 seeds.

    .venv/bin/python benchmarks/label_efficiency_mitbih.py [--pretrain-steps 150] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SRC = REPO.parent / "shared" / "data" / "signals" / "mitdb_ds1"
RESULTS = REPO / "benchmarks" / "results"
SPLIT_CLASSES = ["F", "N", "S", "V"]
REPORT_CLASSES = ["N", "S", "V", "F"]
RR = ["rr_prev", "rr_next", "rr_local", "rr_record", "rr_prev_ratio", "rr_next_ratio", "rr_local_ratio", "rr_prev_next"]
MIN_BEATS = 10
log = logging.getLogger("medssl.bench")


def medssl_cli(*args: str) -> None:
    """``medssl ARGS`` as a new process (the installed entry point of this venv)."""
    exe = Path(sys.executable).with_name("medssl")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "medssl.cli"]), "-q", *args]
    log.info("$ medssl %s", " ".join(args))
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def split_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """Beats per split (rows) and class (columns N/S/V/F)."""
    return pd.crosstab(manifest["split"], manifest["label"]).reindex(index=["train", "test"], columns=SPLIT_CLASSES,
                                                                     fill_value=0)


def ingest_with_record_split(work: Path, records: str | None, max_seed: int, min_beats: int) -> tuple[Path, int, pd.DataFrame]:
    """``medssl ingest signals`` with seeds 0, 1, ... until both sides hold ``min_beats`` of every class."""
    for seed in range(max_seed):
        data_dir = work / f"data_v0t25_seed{seed}"
        if not (data_dir / "manifest.parquet").is_file():
            medssl_cli("ingest", "signals", str(SRC), "--format", "wfdb", "--out", str(data_dir), "--val-fraction", "0",
                       "--test-fraction", "0.25", "--seed", str(seed), *(["--records", records] if records else []))
        table = split_counts(pd.read_parquet(data_dir / "manifest.parquet"))
        if (table.to_numpy() >= min_beats).all():
            return data_dir, seed, table
        log.info("ingest seed %d: a class has fewer than %d beats on one side, next seed", seed, min_beats)
        shutil.rmtree(data_dir)
    raise SystemExit(f"no ingest seed in 0..{max_seed - 1} puts {min_beats} beats of every class on both sides")


def baseline(manifest: pd.DataFrame, subset: np.ndarray, test: np.ndarray, seed: int) -> dict[str, dict[str, float]]:
    """F1 per class of RR features + LogisticRegression / HistGradientBoosting on ``subset`` rows, on ``test`` rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = manifest[RR].to_numpy(dtype=np.float64)
    fill = np.nanmedian(x[subset], axis=0)
    x = np.where(np.isfinite(x), x, fill)
    y = manifest["label"].astype(str).to_numpy()
    out = {}
    models = {"rr_logreg": make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000)),
              "rr_hgb": HistGradientBoostingClassifier(class_weight="balanced", random_state=seed)}
    classes = sorted(set(y[subset]))
    keep = test[np.isin(y[test], classes)]
    for name, model in models.items():
        pred = model.fit(x[subset], y[subset]).predict(x[keep])
        f1 = f1_score(y[keep], pred, labels=classes, average=None, zero_division=0)
        per = dict(zip(classes, f1.tolist()))
        out[name] = {"macro_f1": float(np.mean(f1)), **{f"f1_{c}": per.get(c) for c in REPORT_CLASSES}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medssl_bench_mitbih_v2"), help="scratch folder")
    parser.add_argument("--pretrain-steps", type=int, default=150, help="optimizer steps of the preset pretraining")
    parser.add_argument("--fraction", type=float, default=0.01, help="--label-fraction of medssl finetune")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--records", help="comma-separated records to ingest (quick trials; default: all 22)")
    parser.add_argument("--quick", action="store_true", help="20 pretrain steps, 1 seed; no results file")
    args = parser.parse_args()
    if args.quick:
        args.pretrain_steps, args.seeds = 20, 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    import medssl
    from medssl.train.labels import draw_labelled_subset, load_labels

    load = os.getloadavg()
    work = args.work / (f"records_{args.records.replace(',', '_')}" if args.records else "all")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    data_dir, split_seed, table = ingest_with_record_split(work, args.records, 50, 0 if args.records else MIN_BEATS)
    timings["ingest_s"] = time.perf_counter() - t
    manifest = pd.read_parquet(data_dir / "manifest.parquet")

    run_dir = work / f"micle_steps{args.pretrain_steps}"
    if not (run_dir / "checkpoint.pt").is_file():
        t = time.perf_counter()
        shutil.rmtree(run_dir, ignore_errors=True)
        medssl.pretrain(data_dir, run_dir, config=REPO / "configs" / "mitdb_micle.yaml", max_steps=args.pretrain_steps)
        timings["pretrain_s"] = time.perf_counter() - t
    ckpt = run_dir / "checkpoint.pt"

    labels = load_labels(manifest).to_numpy(dtype=object)
    split = manifest["split"].astype(str).to_numpy()
    test_rows = np.flatnonzero(split == "test")
    records, t_all = [], time.perf_counter()
    for seed in range(args.seeds):
        out = work / f"ft_steps{args.pretrain_steps}" / f"s{seed}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        medssl_cli("finetune", "--checkpoint", str(ckpt), "--data", str(data_dir), "--out", str(out),
                   "--label-fraction", f"{args.fraction:g}", "--seed", str(seed))
        medssl_cli("evaluate", "--model", str(out / "model.pt"), "--data", str(data_dir), "--out", str(out / "report.json"))
        report = json.loads((out / "report.json").read_text())
        fit = json.loads((out / "metrics.json").read_text())
        per_class = report["metrics"]["per_class"]
        records.append({"method": "medssl", "seed": seed, "n_labelled": fit["n_labelled"], "mode": fit["mode"],
                        "recipe": fit["recipes"]["few_label"], "chosen": (fit.get("selection") or {}).get("chosen"),
                        "n_test": report["n"], "macro_f1": report["metrics"]["macro_f1"],
                        **{f"f1_{c}": per_class.get(c, {}).get("f1") for c in REPORT_CLASSES},
                        "seconds": round(time.perf_counter() - start, 1), "selection": fit.get("selection")})
        subset = draw_labelled_subset(manifest["patient_id"].astype(str).to_numpy(), labels, pool=split == "train",
                                      fraction=args.fraction, seed=seed, unit=fit["label_unit"])
        assert len(subset) == fit["n_labelled"]
        for name, scores in baseline(manifest, subset, test_rows, seed).items():
            records.append({"method": name, "seed": seed, "n_labelled": len(subset), **scores})
        log.info("seed %d: %s", seed, {r["method"]: (round(r["f1_V"] or 0, 3), round(r["f1_S"] or 0, 3))
                                        for r in records if r["seed"] == seed})
    timings["finetune_evaluate_baselines_s"] = time.perf_counter() - t_all

    frame = pd.DataFrame.from_records(records)
    cols = ["macro_f1"] + [f"f1_{c}" for c in REPORT_CLASSES]
    summary = frame.groupby("method", sort=False)[cols].agg(["mean", "std"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary = summary.reset_index()
    mean = summary.set_index("method")
    v, s = float(mean.loc["medssl", "f1_V_mean"]), float(mean.loc["medssl", "f1_S_mean"])
    test_records = sorted(manifest.loc[split == "test", "patient_id"].astype(str).unique().tolist())
    result = {
        "benchmark": "label_efficiency_mitbih",
        "date": time.strftime("%Y-%m-%d"),
        "load_avg_at_start": [round(x, 2) for x in load],
        "eval": "medssl evaluate on the test records (every test beat of a class the model knows); baselines: "
                "F1 per class on the same test beats",
        "split": {"ingest": "medssl ingest signals --format wfdb --val-fraction 0 --test-fraction 0.25 --seed S",
                  "seed": split_seed, "rule": f"first seed with >= {MIN_BEATS} beats of each of N/S/V/F in train and test",
                  "beats": {k: {c: int(table.loc[k, c]) for c in SPLIT_CLASSES} for k in table.index},
                  "test_records": test_records},
        "labels": f"medssl finetune --label-fraction {args.fraction:g} (default label unit: case), seeds 0..{args.seeds - 1}; "
                  "the baselines get the same labelled beats",
        "pretrain": {"config": "configs/mitdb_micle.yaml", "max_steps": args.pretrain_steps},
        "timings_s": {k: round(x, 1) for k, x in timings.items()},
        "summary": json.loads(summary.to_json(orient="records")),
        "runs": json.loads(frame.to_json(orient="records")),
        "target": {"medssl_f1_V": v, "medssl_f1_S": s, "met": bool(v >= 0.80 and s >= 0.50)},
    }
    print(f"split seed {split_seed}; test records {test_records}; beats per split and class:\n{table}")
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"medssl choices: {frame.loc[frame.method == 'medssl', 'chosen'].tolist()}")
    print(f"target V F1 >= 0.80 and S F1 >= 0.50: V {v:.3f}, S {s:.3f} -> {'MET' if result['target']['met'] else 'MISSED'}")
    print(f"timings {result['timings_s']}; load average at start {result['load_avg_at_start']}")
    if args.quick or args.records:
        print("(quick / --records run: results file not written)")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "label_efficiency_mitbih.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
