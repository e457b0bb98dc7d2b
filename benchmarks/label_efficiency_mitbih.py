"""Few-label beat classification on MIT-BIH DS1 (macro-F1 with 1% of the beats): MICLe vs SimCLR vs from scratch.

What runs (every medssl figure through the public API ``import medssl``, as a user runs it):

1. ``medssl.ingest("signals", mitdb_ds1, format="wfdb", val_fraction=0, test_fraction=0.25, seed=S)``
   (= ``medssl ingest signals ... --format wfdb --val-fraction 0 --test-fraction 0.25 --seed S``):
   22 records, one case per annotated beat (2 leads x 252 samples), AAMI label N/S/V/F/Q,
   patient = record, so the ingest's patient-level split is a split BY RECORD, 25% of the records
   for test. S is the first ingest seed (0, 1, ...) whose train and test records both hold at
   least 10 beats of each of N, S, V and F (S and F beats sit in a handful of records; the rule
   reads label counts from the manifest only, never any model's result);
2. ``medssl.pretrain(data, run, config="configs/mitdb_micle.yaml", max_steps=N)`` and the same with
   ``configs/mitdb_simclr.yaml``: the shipped presets (same encoder, augmentations, batch,
   optimizer, seed, ``limit_cases``) with the script's step budget (``--pretrain-steps``; and
   ``--pretrain-batch`` when given) as the only overrides; train records only, labels unused;
3. few labels, drawn by the benchmark: 1% of the train beats of each class N/S/V/F, at least 5 per
   class (seeds 0..K-1), written as a labels CSV ``case_id,label`` (Q beats are never labelled);
   - ``medssl_micle`` / ``medssl_simclr``: ``medssl.finetune(ckpt, data, out, labels=CSV, seed=K)``
     with the shipped defaults (mode auto = the signals domain's few-label recipe);
   - ``medssl_scratch``: ``medssl.finetune(micle ckpt, data, out, labels=CSV, seed=K, init="random",
     mode="full", epochs=E)``: the same encoder randomly initialised and trained end to end
     (``--epochs`` is the budget override);
   each then ``medssl.evaluate(model, data, report)`` on the test records (the model's classes
   N/S/V/F; evaluate leaves the Q beats out): ``macro_f1`` and ``per_class`` F1 of the report;
4. table -> benchmarks/results/label_efficiency_mitbih.json, printed.

Target: macro-F1 of medssl_micle >= medssl_simclr (mean over seeds).

    .venv/bin/python benchmarks/label_efficiency_mitbih.py [--pretrain-steps 300] [--pretrain-batch B] [--epochs 15] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SRC = REPO.parent / "shared" / "data" / "signals" / "mitdb_ds1"
RESULTS = REPO / "benchmarks" / "results"
CLASSES = ["F", "N", "S", "V"]
MIN_BEATS = 10
log = logging.getLogger("medssl.bench")


def split_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """Beats per split (rows) and class (columns N/S/V/F)."""
    return pd.crosstab(manifest["split"], manifest["label"]).reindex(index=["train", "test"], columns=CLASSES, fill_value=0)


def ingest_with_record_split(work: Path, records: str | None, max_seed: int, min_beats: int) -> tuple[Path, int, pd.DataFrame]:
    """``medssl.ingest`` with seeds 0, 1, ... until both sides hold ``min_beats`` of every class."""
    import medssl

    for seed in range(max_seed):
        data_dir = work / f"data_v0t25_seed{seed}"
        if not (data_dir / "manifest.parquet").is_file():
            opts = {"format": "wfdb", "val_fraction": 0.0, "test_fraction": 0.25, "seed": seed}
            medssl.ingest("signals", SRC, data_dir, **opts, **({"records": records} if records else {}))
        table = split_counts(pd.read_parquet(data_dir / "manifest.parquet"))
        if (table.to_numpy() >= min_beats).all():
            return data_dir, seed, table
        log.info("ingest seed %d: a class has fewer than %d beats on one side, next seed", seed, min_beats)
        shutil.rmtree(data_dir)
    raise SystemExit(f"no ingest seed in 0..{max_seed - 1} puts {min_beats} beats of every class on both sides")


def draw_labels(manifest: pd.DataFrame, fraction: float, floor: int, seed: int, out: Path) -> int:
    """Write ``case_id,label`` for per class ``max(floor, round(fraction * n_class))`` random train beats."""
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in CLASSES:
        rows = manifest.index[(manifest["split"] == "train") & (manifest["label"] == cls)].to_numpy()
        n = min(len(rows), max(floor, round(fraction * len(rows))))
        chosen.append(rng.choice(rows, n, replace=False))
    picked = manifest.loc[np.sort(np.concatenate(chosen)), ["case_id", "label"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    picked.to_csv(out, index=False)
    return len(picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medssl_bench_mitbih"), help="scratch folder (data, runs)")
    parser.add_argument("--pretrain-steps", type=int, default=300, help="optimizer steps of each pretraining")
    parser.add_argument("--pretrain-batch", type=int, help="pretraining batch (default: the presets' 256)")
    parser.add_argument("--fraction", type=float, default=0.01, help="labelled fraction of the train beats per class")
    parser.add_argument("--epochs", type=int, default=15, help="max epochs of the from-scratch fine-tune")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--records", help="comma-separated records to ingest (quick trials; default: all 22)")
    parser.add_argument("--quick", action="store_true", help="30 pretrain steps, 1 seed, 5 epochs; no results file")
    args = parser.parse_args()
    if args.quick:
        args.pretrain_steps, args.seeds, args.epochs = 30, 1, 5
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    import medssl

    work = args.work / (f"records_{args.records.replace(',', '_')}" if args.records else "all")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    data_dir, split_seed, table = ingest_with_record_split(work, args.records, 50, 0 if args.records else MIN_BEATS)
    timings["ingest_s"] = time.perf_counter() - t
    manifest = pd.read_parquet(data_dir / "manifest.parquet")

    budget = {"max_steps": args.pretrain_steps, **({"batch_size": args.pretrain_batch} if args.pretrain_batch else {})}
    tag = "_".join(f"{k}{v}" for k, v in budget.items())
    ckpts = {}
    for method in ("micle", "simclr"):
        run_dir = work / f"{method}_{tag}"
        if not (run_dir / "checkpoint.pt").is_file():
            t = time.perf_counter()
            medssl.pretrain(data_dir, run_dir, config=REPO / "configs" / f"mitdb_{method}.yaml", **budget)
            timings[f"pretrain_{method}_s"] = time.perf_counter() - t
        ckpts[method] = run_dir / "checkpoint.pt"

    runs = {"medssl_micle": (ckpts["micle"], {}), "medssl_simclr": (ckpts["simclr"], {}),
            "medssl_scratch": (ckpts["micle"], {"init": "random", "mode": "full", "epochs": args.epochs})}
    records = []
    t_all = time.perf_counter()
    for seed in range(args.seeds):
        labels_csv = work / "labels" / f"beats_{args.fraction:g}_seed{seed}.csv"
        n_labelled = draw_labels(manifest, args.fraction, floor=5, seed=seed, out=labels_csv)
        for method, (ckpt, extra) in runs.items():
            out = work / f"ft_{tag}" / f"{method}_s{seed}"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            model = medssl.finetune(ckpt, data_dir, out, labels=labels_csv, seed=seed, **extra)
            report = medssl.evaluate(model, data_dir, out / "report.json")
            fit = json.loads((out / "metrics.json").read_text())
            per_class = report["metrics"]["per_class"]
            records.append({
                "method": method, "seed": seed, "n_labelled": n_labelled, "mode": fit["mode"],
                "recipe": fit["recipes"]["few_label"], "n_test": report["n"], "macro_f1": report["metrics"]["macro_f1"],
                **{f"f1_{c}": per_class.get(c, {}).get("f1") for c in ("N", "S", "V", "F")},
                "epochs_run": fit["training"].get("epochs_run"), "seconds": round(time.perf_counter() - start, 1),
            })
            log.info("%s seed=%d n=%d test macro-F1 %.4f", method, seed, n_labelled, report["metrics"]["macro_f1"])
    timings["finetune_evaluate_s"] = time.perf_counter() - t_all

    frame = pd.DataFrame.from_records(records)
    cols = ["macro_f1"] + [f"f1_{c}" for c in ("N", "S", "V", "F")]
    summary = frame.groupby("method", sort=False)[cols].agg(["mean", "std"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary = summary.reset_index()
    mean = summary.set_index("method")["macro_f1_mean"]
    micle, simclr = float(mean["medssl_micle"]), float(mean["medssl_simclr"])
    test_records = sorted(manifest.loc[manifest["split"] == "test", "patient_id"].astype(str).unique().tolist())
    result = {
        "benchmark": "label_efficiency_mitbih",
        "date": time.strftime("%Y-%m-%d"),
        "eval": f"medssl.evaluate on the test records ({records[0]['n_test']} N/S/V/F beats; Q beats left out): "
                "macro_f1 over the model's classes and per-class F1; never used for training or early stopping",
        "split": {"ingest": "medssl.ingest signals --format wfdb --val-fraction 0 --test-fraction 0.25",
                  "seed": split_seed, "rule": f"first seed with >= {MIN_BEATS} beats of each class in train and test",
                  "beats": {s: {c: int(table.loc[s, c]) for c in CLASSES} for s in table.index},
                  "test_records": test_records},
        "labels": f"{args.fraction:g} of the train beats per class (at least 5 per class), seeds 0..{args.seeds - 1}, "
                  "as a labels CSV case_id,label",
        "pretrain": {m: {"config": f"configs/mitdb_{m}.yaml", "overrides": budget} for m in ("micle", "simclr")},
        "finetune": {"medssl_micle/medssl_simclr": "defaults + labels CSV, seed",
                     "medssl_scratch": {"init": "random", "mode": "full", "epochs": args.epochs}},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "summary": json.loads(summary.to_json(orient="records")),
        "runs": json.loads(frame.to_json(orient="records")),
        "target": {"micle_macro_f1": micle, "simclr_macro_f1": simclr, "met": bool(micle >= simclr)},
    }
    print(f"split seed {split_seed}; beats per split and class:\n{table}\nlabelled beats per seed {records[0]['n_labelled']}")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"medssl few-label mode: {sorted(set(frame.loc[frame.method != 'medssl_scratch', 'mode']))}")
    print(f"target: MICLe macro-F1 {micle:.3f} vs SimCLR {simclr:.3f} -> {'MET' if micle >= simclr else 'MISSED'}")
    if args.quick or args.records:
        print("(quick / --records run: results file not written)")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "label_efficiency_mitbih.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
