"""Fraud detection on real transaction logs: medssl exactly as a user runs it, against
scikit-learn's IsolationForest (no labels) and LogisticRegression (few labels), in the same run.

Every "medssl" figure comes from the public Python API (``medssl.ingest`` / ``pretrain`` /
``score`` / ``finetune``: the same functions as the CLI) with shipped defaults and the
``configs/transactions_scarf.yaml`` preset; this script holds no modelling code of medssl's.
For each data set (ULB credit card ``ulb_creditcard_a.csv``, PaySim ``paysim_sample.csv``):

1. ``medssl ingest transactions CSV --val-fraction 0 --test-fraction 0.5`` (schema inferred): the
   ingest's own seeded split gives a *reference* half (``train``) and an *evaluation* half (``test``).
2. Unsupervised: ``medssl pretrain --config configs/transactions_scarf.yaml`` (no labels), then
   ``medssl score --model RUN/checkpoint.pt``: the transactions domain's anomaly recipe is fitted
   on the reference half (its frauds stay in, unlabelled). Baseline: IsolationForest (defaults,
   ``random_state=0``) fitted on the reference half's columns as a user would prepare them with
   pandas (the same columns the ingest kept: numbers, and categories as codes = ``raw`` or one-hot
   = ``raw one-hot``); medssl's ratio is taken against the better of the two. AUPRC/AUROC on the
   evaluation half.
3. Few labels: K in (10, 25, 50) frauds + proportional normals drawn from the reference half,
   five seeds, written as a labels CSV; ``medssl finetune --labels CSV`` (mode auto = the domain's
   few-label recipe) then ``medssl score --model RUN/model.pt``; P(fraud) from the scores file's
   ``predicted_label``/``predicted_proba``. Baseline: StandardScaler + LogisticRegression
   (defaults) on the one-hot columns of exactly the same labelled rows. AUPRC on the evaluation half.

Also printed (orientation, not a target): LogisticRegression on every labelled reference row.
Writes ``benchmarks/results/anomaly_transactions.json`` and prints a table.
Run: ``.venv/bin/python benchmarks/anomaly_transactions.py`` (``--seeds 3`` for a quicker look;
``--split-seeds 5`` also repeats the unsupervised path on four more ingest splits: the ratio's spread).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import medssl

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "transactions"
PRESET = REPO / "configs" / "transactions_scarf.yaml"
RESULTS = REPO / "benchmarks" / "results" / "anomaly_transactions.json"
# the columns a user keeps for the scikit-learn baselines (= what `medssl ingest` keeps as features)
DATASETS = {
    "ulb_creditcard_a": {"file": "ulb_creditcard_a.csv", "label": "Class",
                         "numeric": [f"V{i}" for i in range(1, 29)] + ["Amount"], "categorical": []},
    "paysim_sample": {"file": "paysim_sample.csv", "label": "isFraud",
                      "numeric": ["amount", "oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest",
                                  "isFlaggedFraud"], "categorical": ["type"]},
}
SHOTS = (10, 25, 50)
MEDSSL_UNSUP = "medssl score (checkpoint.pt, shipped recipe)"
MEDSSL_FEW = "medssl finetune + score (shipped recipe)"
BASE_FEW = "logreg(raw one-hot)"
IF_ROWS = ("isolation_forest(raw)", "isolation_forest(raw one-hot)")


def user_features(csv: pd.DataFrame, spec: dict, one_hot: bool) -> np.ndarray:
    """The baseline's feature matrix from the raw CSV, as a user would build it with pandas."""
    x = csv[spec["numeric"]].apply(pd.to_numeric, errors="coerce")
    for col in spec["categorical"]:
        cats = csv[col].astype(str)
        if one_hot:
            x = x.join(pd.get_dummies(cats, prefix=col, dtype=float))
        else:
            x[col] = cats.astype("category").cat.codes
    return x.fillna(x.median()).to_numpy(dtype=np.float64)


def p_positive(scores: pd.DataFrame, positive: str = "1") -> np.ndarray:
    """P(label == positive) from a scores file's most likely label and its probability (two classes)."""
    p = scores["predicted_proba"].to_numpy(dtype=np.float64)
    return np.where(scores["predicted_label"].astype(str).to_numpy() == positive, p, 1.0 - p)


def unsupervised_ratio(name: str, spec: dict, work: Path, split_seed: int) -> float:
    """The unsupervised product path on the ingest split ``split_seed``: medssl AUPRC / best IsolationForest AUPRC."""
    src, data = DATA / spec["file"], work / f"{name}_split{split_seed}"
    medssl.ingest("transactions", src, data, val_fraction=0.0, test_fraction=0.5, seed=split_seed)
    ckpt = medssl.pretrain(data, work / f"run_{name}_split{split_seed}", config=PRESET)
    scores = medssl.score(ckpt, data, work / f"{name}_split{split_seed}.parquet")
    manifest, csv = pd.read_parquet(data / "manifest.parquet"), pd.read_csv(src)
    rows = manifest["row"].to_numpy(dtype=np.int64) - 1
    y = csv[spec["label"]].to_numpy(dtype=np.int64)[rows]
    ref, ev = (manifest["split"] == "train").to_numpy(), (manifest["split"] == "test").to_numpy()
    s = scores.set_index("case_id").loc[manifest["case_id"].astype(str), "anomaly_score"].to_numpy()
    best_if = max(average_precision_score(y[ev], -IsolationForest(random_state=0).fit(f[ref]).score_samples(f[ev]))
                  for f in (user_features(csv, spec, False)[rows], user_features(csv, spec, True)[rows]))
    return float(average_precision_score(y[ev], s[ev]) / best_if)


def run_dataset(name: str, spec: dict, work: Path, seeds: int) -> dict:
    src = DATA / spec["file"]
    data, run = work / name, work / f"run_{name}"
    t0 = time.perf_counter()
    medssl.ingest("transactions", src, data, val_fraction=0.0, test_fraction=0.5, seed=0)
    ckpt = medssl.pretrain(data, run, config=PRESET)
    scores = medssl.score(ckpt, data, work / f"{name}_unsup.parquet")
    unsup_seconds = time.perf_counter() - t0
    manifest = pd.read_parquet(data / "manifest.parquet")
    csv = pd.read_csv(src)
    rows = manifest["row"].to_numpy(dtype=np.int64) - 1  # 1-based data row of the CSV
    y = csv[spec["label"]].to_numpy(dtype=np.int64)[rows]
    ref = (manifest["split"] == "train").to_numpy()
    ev = (manifest["split"] == "test").to_numpy()
    s = scores.set_index("case_id").loc[manifest["case_id"].astype(str), "anomaly_score"].to_numpy()
    raw, raw_oh = user_features(csv, spec, False)[rows], user_features(csv, spec, True)[rows]

    def metrics(score: np.ndarray) -> dict[str, float]:
        return {"auroc": float(roc_auc_score(y[ev], score[ev])), "auprc": float(average_precision_score(y[ev], score[ev]))}

    unsup = {MEDSSL_UNSUP: metrics(s)}
    for row, feats in zip(IF_ROWS, (raw, raw_oh)):
        unsup[row] = metrics(-IsolationForest(random_state=0).fit(feats[ref]).score_samples(feats))
    ceiling = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(raw_oh[ref], y[ref])
    supervised = {**metrics(ceiling.predict_proba(raw_oh)[:, 1]), "reference_frauds": int(y[ref].sum())}

    ref_idx = np.flatnonzero(ref)
    pos, neg = ref_idx[y[ref_idx] == 1], ref_idx[y[ref_idx] == 0]
    few: dict[str, dict] = {}
    for k in SHOTS:
        n_neg = int(round(k * len(neg) / len(pos)))
        res: dict[str, list[float]] = {MEDSSL_FEW: [], BASE_FEW: []}
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            lab = np.concatenate([rng.choice(pos, k, replace=False), rng.choice(neg, n_neg, replace=False)])
            labels_csv = work / f"{name}_k{k}_s{seed}.csv"
            pd.DataFrame({"case_id": manifest["case_id"].astype(str).to_numpy()[lab], "label": y[lab]}).to_csv(labels_csv, index=False)
            model = medssl.finetune(ckpt, data, work / f"ft_{name}_k{k}_s{seed}", labels=labels_csv, seed=seed)
            out = medssl.score(model, data, work / f"{name}_k{k}_s{seed}.parquet")
            p = p_positive(out.set_index("case_id").loc[manifest["case_id"].astype(str)])
            res[MEDSSL_FEW].append(float(average_precision_score(y[ev], p[ev])))
            lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(raw_oh[lab], y[lab])
            res[BASE_FEW].append(float(average_precision_score(y[ev], lr.predict_proba(raw_oh[ev])[:, 1])))
        few[str(k)] = {n: {"auprc_mean": float(np.mean(v)), "auprc_std": float(np.std(v)), "auprc": v, "n_normals": n_neg}
                       for n, v in res.items()}
    best_if = max(unsup[r]["auprc"] for r in IF_ROWS)
    return {"n": int(len(manifest)), "frauds": int(y.sum()), "reference_rows": int(ref.sum()), "evaluation_rows": int(ev.sum()),
            "ingest_pretrain_score_seconds": round(unsup_seconds, 1), "unsupervised": unsup,
            "ratio_to_isolation_forest": unsup[MEDSSL_UNSUP]["auprc"] / best_if,
            "supervised_reference": supervised, "few_label": few,
            "few_label_minus_logreg": {k: v[MEDSSL_FEW]["auprc_mean"] - v[BASE_FEW]["auprc_mean"] for k, v in few.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="label draws per K (default 5)")
    parser.add_argument("--split-seeds", type=int, default=1,
                        help="also repeat the unsupervised path on ingest split seeds 1..N-1 (spread of the ratio)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset of " + ", ".join(DATASETS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    t_start = time.perf_counter()
    results: dict[str, object] = {"date": time.strftime("%Y-%m-%d"), "preset": str(PRESET.relative_to(REPO)),
                                  "seeds": args.seeds, "path": "medssl public API (= CLI), shipped defaults"}
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            results[name] = run_dataset(name, DATASETS[name], Path(tmp), args.seeds)
            if args.split_seeds > 1:
                ratios = [results[name]["ratio_to_isolation_forest"]] + [
                    unsupervised_ratio(name, DATASETS[name], Path(tmp), k) for k in range(1, args.split_seeds)]
                results[name]["ratio_over_split_seeds"] = {"ratios": ratios, "mean": float(np.mean(ratios)),
                                                           "met": int(sum(r >= 1.2 for r in ratios))}
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    for name in names:
        r = results[name]
        print(f"\n== {name}: {r['n']} rows, {r['frauds']} frauds; reference {r['reference_rows']}, evaluation {r['evaluation_rows']}")
        print(f"{'unsupervised':50s} {'AUROC':>7s} {'AUPRC':>7s}")
        for det, v in r["unsupervised"].items():
            print(f"{det:50s} {v['auroc']:7.3f} {v['auprc']:7.3f}")
        print(f"medssl / best IsolationForest AUPRC = {r['ratio_to_isolation_forest']:.3f} (target >= 1.2)")
        if "ratio_over_split_seeds" in r:
            o = r["ratio_over_split_seeds"]
            print(f"  over {len(o['ratios'])} ingest split seeds: " + ", ".join(f"{x:.3f}" for x in o["ratios"])
                  + f"; mean {o['mean']:.3f}; >= 1.2 on {o['met']}")
        sup = r["supervised_reference"]
        print(f"logreg on all {sup['reference_frauds']} labelled reference frauds (ceiling, not a target): AUPRC {sup['auprc']:.3f}")
        print(f"{'few-label AUPRC (mean±std)':42s} " + " ".join(f"{'K=' + k:>13s}" for k in r["few_label"]))
        for method in (MEDSSL_FEW, BASE_FEW):
            cells = [f"{v[method]['auprc_mean']:.3f}±{v[method]['auprc_std']:.3f}" for v in r["few_label"].values()]
            print(f"{method:42s} " + " ".join(f"{c:>13s}" for c in cells))
    print(f"\ntotal {results['total_seconds']} s; wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
