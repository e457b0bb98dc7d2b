"""Label efficiency on PhysioNet 2012 set A (in-hospital death, test AUROC): the product path vs hand features.

What runs (every medssl figure through the CLI, ``medssl.cli.main([...])`` in this process, exactly
the commands a user types):

1. ``medssl ingest ehr set-a --format physionet2012 --outcomes Outcomes-a.txt --val-fraction 0
   --test-fraction 0.25 --seed 0``: the ingest's own fixed patient-level 75/25 train/test split
   (one stay per patient in set A);
2. ``medssl pretrain --config configs/physionet2012_ts2vec.yaml --max-steps N``: the shipped TS2Vec
   preset with the script's step budget (``--pretrain-steps``) as the one override; train split only,
   labels unused. The checkpoint names the EHR default few-label recipe (``ehr_summary_hybrid``);
3. ``medssl finetune --label-fraction F --seed S`` with every other setting at its default (mode auto:
   logistic regression on [embedding | per-variable summaries], block and C chosen by
   patient-grouped CV on the labelled stays only), then ``medssl evaluate`` on the test split; 10% of
   labels for seeds 0..S-1 and 100% for seed 0 (``--fractions``);
4. the baselines a user would write instead, on the same split and in the same run: per-variable
   last/min/max/mean over the stay read with pandas from the raw ``RecordID.txt`` files (-1 =
   missing) + the static descriptors (Age, Gender, Height, ICUType at 00:00);
   ``hand_hgb``: scikit-learn ``HistGradientBoostingClassifier`` defaults; ``hand_lr``: mean
   imputation + standardisation + ``LogisticRegressionCV`` (5-fold AUROC); each on a stratified
   draw of the same fraction of the train stays (``train_test_split``, random_state=S), scored on
   the same test stays; 100% of the train labels is the ceiling;
5. table of mean/std test AUROC -> benchmarks/results/label_efficiency_physionet2012.json, printed.

medssl draws its own labelled subset (``--label-fraction``, ``--seed``); the baselines' draws have the
same size and class balance, not necessarily the same stays. The test split is read only by
``medssl evaluate`` and the baselines' scoring; nothing is chosen on it.

Acceptance (issue 15): mean test AUROC of medssl at 10% >= 0.84 and >= hand_hgb at 10%.

    .venv/bin/python benchmarks/label_efficiency_physionet2012.py [--pretrain-steps 120] [--seeds 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
TARGET = 0.84
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


def hand_auroc(kind: str, x: pd.DataFrame, y: pd.Series, train_ids: np.ndarray, test_ids: np.ndarray, seed: int) -> float:
    """Test AUROC of the hand-feature baseline ``kind`` (hgb | lr) fitted on ``train_ids``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr = x.loc[train_ids]
    # columns with fewer than 2 measured values in the labelled subset carry no split (and make
    # scikit-learn's binning fail on tiny subsets): left out, chosen on the labelled train rows only
    keep = xtr.columns[xtr.nunique(dropna=True) >= 2]
    if kind == "hgb":
        model = HistGradientBoostingClassifier(random_state=seed)
    else:
        model = make_pipeline(SimpleImputer(add_indicator=True), StandardScaler(),
                              LogisticRegressionCV(Cs=10, cv=5, scoring="roc_auc", max_iter=2000))
    model.fit(xtr[keep].to_numpy(), y.loc[train_ids].to_numpy())
    return float(roc_auc_score(y.loc[test_ids].to_numpy(), model.predict_proba(x.loc[test_ids, keep].to_numpy())[:, 1]))


def cli(*argv: str) -> None:
    """One ``medssl`` command, as typed; a non-zero exit stops the benchmark."""
    from medssl.cli import main

    rc = main(["-q", *argv])
    if rc != 0:
        raise SystemExit(f"medssl {' '.join(argv)} exited with {rc}")


def pretrained(data_dir: Path, run_dir: Path, steps: int, timings: dict[str, float]) -> Path:
    """The preset's checkpoint (re-used when it names the current EHR default recipes)."""
    import medssl
    from medssl.domains import default_recipes

    ckpt = run_dir / "checkpoint.pt"
    want = dict(zip(("anomaly", "few_label"), default_recipes("ehr")))
    if ckpt.is_file() and medssl.load_model(ckpt).meta.get("recipes") != want:
        log.info("%s names older recipes; pretraining again", ckpt)
        shutil.rmtree(run_dir)
    if not ckpt.is_file():
        t = time.perf_counter()
        cli("pretrain", "--data", str(data_dir), "--out", str(run_dir), "--config", str(PRESET), "--max-steps", str(steps))
        timings["pretrain_s"] = time.perf_counter() - t
    return ckpt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medssl_bench_p12"), help="scratch folder (data, runs)")
    parser.add_argument("--pretrain-steps", type=int, default=120, help="TS2Vec optimizer steps (the preset's batch 64)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds at fractions below 100%% (100%%: seed 0)")
    parser.add_argument("--fractions", default="0.1,1.0", help="label fractions, comma-separated")
    parser.add_argument("--max-stays", type=int, help="ingest only the first N stay files (quick trials)")
    parser.add_argument("--quick", action="store_true", help="500 stays, 20 pretrain steps, 1 seed; no results file")
    args = parser.parse_args()
    if args.quick:
        args.max_stays, args.pretrain_steps, args.seeds = args.max_stays or 500, 20, 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    from sklearn.model_selection import train_test_split

    load_start = os.getloadavg()
    work = args.work / (f"limit{args.max_stays}" if args.max_stays else "full")
    data_dir, run_dir = work / "data_v0t25", work / f"ts2vec_{args.pretrain_steps}"
    timings: dict[str, float] = {}
    ingest = ["ingest", "ehr", str(SRC / "set-a"), "--format", "physionet2012", "--outcomes", str(SRC / "Outcomes-a.txt"),
              "--val-fraction", "0", "--test-fraction", "0.25", "--seed", "0", "--out", str(data_dir),
              *(["--limit", str(args.max_stays)] if args.max_stays else [])]
    if not (data_dir / "manifest.parquet").is_file():
        t = time.perf_counter()
        cli(*ingest)
        timings["ingest_s"] = time.perf_counter() - t
    ckpt = pretrained(data_dir, run_dir, args.pretrain_steps, timings)

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

    fractions = [float(f) for f in args.fractions.split(",")]
    records = []
    ft_dir = work / f"ft_{args.pretrain_steps}"
    t_all = time.perf_counter()
    for fraction in fractions:
        for seed in ([0] if fraction == 1.0 else range(args.seeds)):
            out = ft_dir / f"medssl_f{fraction:g}_s{seed}"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            cli("finetune", "--checkpoint", str(ckpt), "--data", str(data_dir), "--out", str(out),
                "--label-fraction", f"{fraction:g}", "--seed", str(seed))
            cli("evaluate", "--model", str(out / "model.pt"), "--data", str(data_dir), "--out", str(out / "report.json"))
            report = json.loads((out / "report.json").read_text())
            fit = json.loads((out / "metrics.json").read_text())
            sel = fit.get("selection") or {}
            records.append({"method": "medssl", "fraction": fraction, "seed": seed, "n_labelled": fit["n_labelled"],
                            "mode": fit["mode"], "recipe": fit["recipes"]["few_label"], "chosen": sel.get("chosen"),
                            "cv_auroc": (sel.get("candidates") or {}).get(sel.get("chosen")), "n_test": report["n"],
                            "auroc": report["metrics"]["auroc"], "auprc": report["metrics"]["auprc"],
                            "seconds": round(time.perf_counter() - start, 1)})
            log.info("medssl fraction=%g seed=%d n=%d chose %s test AUROC %.4f", fraction, seed, fit["n_labelled"],
                     sel.get("chosen"), report["metrics"]["auroc"])
            sub = train_ids if fraction == 1.0 else train_test_split(
                train_ids, train_size=round(fraction * len(train_ids)), stratify=y.loc[train_ids], random_state=seed)[0]
            for kind in ("hgb", "lr"):
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    auc = hand_auroc(kind, feats, y, sub, test_ids, seed)
                records.append({"method": f"hand_{kind}", "fraction": fraction, "seed": seed, "n_labelled": len(sub),
                                "n_test": len(test_ids), "auroc": auc, "seconds": round(time.perf_counter() - start, 1)})
                log.info("hand_%s fraction=%g seed=%d n=%d test AUROC %.4f", kind, fraction, seed, len(sub), auc)
    timings["curves_s"] = time.perf_counter() - t_all

    table = pd.DataFrame.from_records(records)
    summary = (table.groupby(["method", "fraction"], sort=False)
               .agg(n_labelled=("n_labelled", "mean"), runs=("auroc", "size"), auroc_mean=("auroc", "mean"),
                    auroc_std=("auroc", "std")).reset_index())
    mean = summary.set_index(["method", "fraction"])["auroc_mean"]
    ssl_10 = float(mean.get(("medssl", 0.1), np.nan))
    hgb_10 = float(mean.get(("hand_hgb", 0.1), np.nan))
    met = bool(ssl_10 >= TARGET and ssl_10 >= hgb_10)
    result = {
        "benchmark": "label_efficiency_physionet2012",
        "task": "in-hospital death, PhysioNet/CinC 2012 set A",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(v, 2) for v in load_start],
                    "loadavg_end": [round(v, 2) for v in os.getloadavg()]},
        "eval": f"test AUROC on {len(test_ids)} stays ({int(y.loc[test_ids].sum())} deaths) of the ingest's "
                "patient-level 75/25 split (seed 0); never used for training or any choice",
        "commands": {"ingest": "medssl " + " ".join(ingest),
                     "pretrain": f"medssl pretrain --config {PRESET.relative_to(REPO)} --max-steps {args.pretrain_steps}",
                     "finetune": "medssl finetune --label-fraction F --seed S (all else default)",
                     "evaluate": "medssl evaluate --model RUN/model.pt --data DATA_DIR"},
        "hand_features": "per variable last/min/max/mean over the stay (NaN if never measured) + Age/Gender/Height/"
                         "ICUType, from the raw files with pandas; hand_hgb: HistGradientBoostingClassifier defaults; "
                         "hand_lr: mean imputation + indicators, standardised, LogisticRegressionCV(5-fold AUROC)",
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "summary": json.loads(summary.to_json(orient="records")),
        "runs": json.loads(table.to_json(orient="records")),
        "target": {"medssl_10pct_auroc": ssl_10, "hand_hgb_10pct_auroc": hgb_10, "threshold": TARGET, "met": met},
    }
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"medssl choices: {table.loc[table.method == 'medssl', 'chosen'].tolist()}")
    print(f"target: medssl @10% {ssl_10:.3f} >= {TARGET} and >= hand HistGB @10% {hgb_10:.3f} -> {'MET' if met else 'MISSED'}")
    if args.quick or args.max_stays:
        print("(quick / --max-stays run: results file not written)")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "label_efficiency_physionet2012.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
