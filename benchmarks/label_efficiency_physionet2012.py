"""Label efficiency on PhysioNet 2012 set A (in-hospital death, test AUROC): the product path vs hand features.

What runs (every medssl figure through the public API ``import medssl``, as a user runs it):

1. ``medssl.ingest("ehr", set-a, format="physionet2012", outcomes=Outcomes-a.txt, val_fraction=0,
   test_fraction=0.25, seed=0)`` (= ``medssl ingest ehr ... --val-fraction 0 --test-fraction 0.25``):
   the ingest's own patient-level 75/25 train/test split (one stay per patient in set A); no val
   split, so full fine-tuning early-stops on held-out labelled train patients, never on test;
2. ``medssl.pretrain(data, run, config="configs/physionet2012_ts2vec.yaml", max_steps=N)``: the
   shipped TS2Vec preset with the script's step budget (``--pretrain-steps``) as the one override;
   it trains on the train split, labels unused;
3. at 1, 5, 10% (seeds 0..S-1) and 100% (seed 0) of the labelled train stays:
   - ``medssl_ssl``: ``medssl.finetune(ckpt, data, out, label_fraction=F, seed=S)`` with the shipped
     defaults (mode auto = the EHR domain's few-label recipe on the pretrained encoder), then
     ``medssl.evaluate(model, data, report)`` (the test split);
   - ``medssl_scratch``: supervised from scratch, the product's own settings:
     ``medssl.finetune(ckpt, data, out, label_fraction=F, seed=S, init="random", mode="full",
     epochs=E)`` (the preset's encoder, randomly initialised, trained end to end; ``--epochs`` is the
     budget override) + ``medssl.evaluate``;
   - ``hand_hgb`` (baseline a user would write instead): per-variable last/min/max/mean over the
     stay read with pandas from the raw ``RecordID.txt`` files (long format Time,Parameter,Value;
     -1 = missing) + the static descriptors (Age, Gender, Height, ICUType at 00:00), scikit-learn
     ``HistGradientBoostingClassifier`` defaults, on a stratified draw of the same fraction of the
     same train stays (``train_test_split``, random_state=S), scored on the same test stays.
   medssl draws its own labelled subset (``label_fraction``, ``seed``); the baseline's draw has the
   same size and class balance, not necessarily the same stays;
4. table of mean/std test AUROC -> benchmarks/results/label_efficiency_physionet2012.json, printed.

The benchmark holds only the baseline and the measuring (split read from the ingest's manifest,
labels from Outcomes-a.txt, AUROC from ``medssl.evaluate``'s report and scikit-learn).

Target: mean test AUROC of medssl_ssl at 10% >= hand_hgb at 100%.

    .venv/bin/python benchmarks/label_efficiency_physionet2012.py [--pretrain-steps 120] [--epochs 15] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SRC = REPO.parent / "shared" / "data" / "ehr" / "physionet2012"
PRESET = REPO / "configs" / "physionet2012_ts2vec.yaml"
RESULTS = REPO / "benchmarks" / "results"
STATIC = ("Age", "Gender", "Height", "ICUType")
log = logging.getLogger("medssl.bench")


def hand_features(stay_files: list[Path]) -> pd.DataFrame:
    """One row per stay (index RecordID as str): last/min/max/mean of every variable + statics."""
    frames = []
    for path in stay_files:
        df = pd.read_csv(path)
        df["case_id"] = path.stem
        frames.append(df)
    ev = pd.concat(frames, ignore_index=True)
    ev["Value"] = ev["Value"].where(ev["Value"] != -1)
    hm = ev["Time"].str.split(":", expand=True).astype(int)
    ev["t"] = hm[0] * 60 + hm[1]
    ev = ev[ev["Parameter"] != "RecordID"]
    static = ev[ev["Parameter"].isin(STATIC) & (ev["t"] == 0)].pivot_table(
        index="case_id", columns="Parameter", values="Value", aggfunc="first")
    series = ev[~ev["Parameter"].isin(STATIC)].dropna(subset=["Value"]).sort_values(["case_id", "t"])
    stats = series.groupby(["case_id", "Parameter"])["Value"].agg(["last", "min", "max", "mean"]).unstack("Parameter")
    stats.columns = [f"{var}_{stat}" for stat, var in stats.columns]
    ids = [p.stem for p in stay_files]
    return pd.concat([stats.reindex(ids), static.reindex(ids)], axis=1)


def hgb_auroc(x: pd.DataFrame, y: pd.Series, train_ids: np.ndarray, test_ids: np.ndarray, seed: int) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    xtr = x.loc[train_ids]
    # columns with fewer than 2 measured values in the labelled subset carry no split (and make
    # scikit-learn's binning fail on tiny subsets): left out, chosen on the labelled train rows only
    keep = xtr.columns[xtr.nunique(dropna=True) >= 2]
    model = HistGradientBoostingClassifier(random_state=seed).fit(xtr[keep].to_numpy(), y.loc[train_ids].to_numpy())
    return float(roc_auc_score(y.loc[test_ids].to_numpy(), model.predict_proba(x.loc[test_ids, keep].to_numpy())[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medssl_bench_p12"), help="scratch folder (data, runs)")
    parser.add_argument("--pretrain-steps", type=int, default=120, help="TS2Vec optimizer steps (the preset's batch 64)")
    parser.add_argument("--epochs", type=int, default=15, help="max epochs of the from-scratch fine-tune (patience 5)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds at 1, 5 and 10%%")
    parser.add_argument("--max-stays", type=int, help="ingest only the first N stay files (quick trials)")
    parser.add_argument("--quick", action="store_true", help="500 stays, 100 pretrain steps, 5 epochs, 1 seed; no results file")
    args = parser.parse_args()
    if args.quick:
        args.max_stays, args.pretrain_steps, args.epochs, args.seeds = args.max_stays or 500, 100, 5, 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    from sklearn.model_selection import train_test_split

    import medssl

    work = args.work / (f"limit{args.max_stays}" if args.max_stays else "full")
    data_dir, run_dir = work / "data_v0t25", work / f"ts2vec_{args.pretrain_steps}"
    timings: dict[str, float] = {}
    ingest_opts = {"format": "physionet2012", "outcomes": str(SRC / "Outcomes-a.txt"), "val_fraction": 0.0,
                   "test_fraction": 0.25, "seed": 0, **({"limit": args.max_stays} if args.max_stays else {})}
    if not (data_dir / "manifest.parquet").is_file():
        t = time.perf_counter()
        medssl.ingest("ehr", SRC / "set-a", data_dir, **ingest_opts)
        timings["ingest_s"] = time.perf_counter() - t
    if not (run_dir / "checkpoint.pt").is_file():
        t = time.perf_counter()
        medssl.pretrain(data_dir, run_dir, config=PRESET, max_steps=args.pretrain_steps)
        timings["pretrain_s"] = time.perf_counter() - t
    ckpt = run_dir / "checkpoint.pt"

    manifest = pd.read_parquet(data_dir / "manifest.parquet").set_index("case_id")
    outcomes = pd.read_csv(SRC / "Outcomes-a.txt", dtype={"RecordID": str}).set_index("RecordID")["In-hospital_death"]
    y = outcomes.reindex(manifest.index)
    labelled = y.notna()
    train_ids = manifest.index[(manifest["split"] == "train") & labelled].to_numpy()
    test_ids = manifest.index[(manifest["split"] == "test") & labelled].to_numpy()
    y = y.astype("float").fillna(-1).astype(int)
    t = time.perf_counter()
    feats = hand_features([SRC / "set-a" / f"{cid}.txt" for cid in manifest.index])
    timings["hand_features_s"] = time.perf_counter() - t

    fractions = [0.01, 0.05, 0.1, 1.0]
    records = []
    ft_dir = work / f"ft_{args.pretrain_steps}"
    t_all = time.perf_counter()
    for fraction in fractions:
        for seed in ([0] if fraction == 1.0 else range(args.seeds)):
            runs = {"medssl_ssl": {}, "medssl_scratch": {"init": "random", "mode": "full", "epochs": args.epochs}}
            for method, extra in runs.items():
                out = ft_dir / f"{method}_f{fraction:g}_s{seed}"
                shutil.rmtree(out, ignore_errors=True)
                start = time.perf_counter()
                model = medssl.finetune(ckpt, data_dir, out, label_fraction=fraction, seed=seed, **extra)
                report = medssl.evaluate(model, data_dir, out / "report.json")
                fit = json.loads((out / "metrics.json").read_text())
                records.append({"method": method, "fraction": fraction, "seed": seed, "n_labelled": fit["n_labelled"],
                                "mode": fit["mode"], "recipe": fit["recipes"]["few_label"], "n_test": report["n"],
                                "auroc": report["metrics"]["auroc"], "auprc": report["metrics"]["auprc"],
                                "epochs_run": fit["training"].get("epochs_run"),
                                "seconds": round(time.perf_counter() - start, 1)})
                log.info("%s fraction=%g seed=%d n=%d test AUROC %.4f", method, fraction, seed, fit["n_labelled"],
                         report["metrics"]["auroc"])
            start = time.perf_counter()
            sub = train_ids if fraction == 1.0 else train_test_split(
                train_ids, train_size=round(fraction * len(train_ids)), stratify=y.loc[train_ids], random_state=seed)[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                auc = hgb_auroc(feats, y, sub, test_ids, seed)
            records.append({"method": "hand_hgb", "fraction": fraction, "seed": seed, "n_labelled": len(sub),
                            "mode": None, "recipe": None, "n_test": len(test_ids), "auroc": auc, "auprc": None,
                            "epochs_run": None, "seconds": round(time.perf_counter() - start, 1)})
            log.info("hand_hgb fraction=%g seed=%d n=%d test AUROC %.4f", fraction, seed, len(sub), auc)
    timings["curves_s"] = time.perf_counter() - t_all

    table = pd.DataFrame.from_records(records)
    summary = (table.groupby(["method", "fraction"], sort=False)
               .agg(n_labelled=("n_labelled", "mean"), runs=("auroc", "size"), auroc_mean=("auroc", "mean"),
                    auroc_std=("auroc", "std")).reset_index())
    mean = summary.set_index(["method", "fraction"])["auroc_mean"]
    ssl_10, hand_100 = float(mean[("medssl_ssl", 0.1)]), float(mean[("hand_hgb", 1.0)])
    result = {
        "benchmark": "label_efficiency_physionet2012",
        "task": "in-hospital death, PhysioNet/CinC 2012 set A",
        "date": time.strftime("%Y-%m-%d"),
        "eval": f"test AUROC on {len(test_ids)} stays ({int(y.loc[test_ids].sum())} deaths) of the ingest's "
                "patient-level 75/25 split (seed 0); never used for training or early stopping",
        "ingest": {k: str(v) for k, v in ingest_opts.items()},
        "split": manifest["split"].value_counts().to_dict(),
        "pretrain": {"config": str(PRESET.relative_to(REPO)), "overrides": {"max_steps": args.pretrain_steps}},
        "finetune": {"medssl_ssl": "defaults + label_fraction, seed",
                     "medssl_scratch": {"init": "random", "mode": "full", "epochs": args.epochs}},
        "hand_features": "per variable last/min/max/mean over the stay (NaN if never measured) + Age/Gender/Height/"
                         "ICUType, from the raw files with pandas; HistGradientBoostingClassifier defaults",
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "summary": json.loads(summary.to_json(orient="records")),
        "runs": json.loads(table.to_json(orient="records")),
        "target": {"medssl_ssl_10pct_auroc": ssl_10, "hand_hgb_100pct_auroc": hand_100, "met": bool(ssl_10 >= hand_100)},
    }
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"medssl few-label mode: {sorted(set(table.loc[table.method == 'medssl_ssl', 'mode']))}")
    print(f"target: medssl SSL @10% {ssl_10:.3f} vs hand-feature HistGB @100% {hand_100:.3f} -> "
          f"{'MET' if ssl_10 >= hand_100 else 'MISSED'}")
    if args.quick or args.max_stays:
        print("(quick / --max-stays run: results file not written)")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "label_efficiency_physionet2012.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
