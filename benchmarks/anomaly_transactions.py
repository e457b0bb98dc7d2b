"""Fraud detection on real transaction logs: medssl (SCARF pretraining + anomaly scorer) against
scikit-learn's IsolationForest (no labels) and LogisticRegression (few labels), in the same run.

For each data set (ULB credit card ``ulb_creditcard_a.csv``, PaySim ``paysim_sample.csv``):

1. ``medssl ingest transactions`` (inferred schema), then a 50/50 split stratified on the label
   with a fixed seed: the *reference* half (labels hidden from everything unsupervised) and the
   *evaluation* half.
2. Unsupervised: ``medssl.train.pretrain`` (method ``scarf``, encoder ``tabular_mlp``) on the
   reference half without labels; embed both halves; anomaly scorers fitted on the reference
   half (its frauds stay in, unlabelled). Baseline: scikit-learn's IsolationForest (defaults,
   ``random_state=0``) fitted on the same encoded features of the reference half, both with the
   categorical columns as indices (``raw``) and one-hot (``raw one-hot``); the medssl ratio is
   taken against the better of the two. AUROC and AUPRC on the evaluation half.
3. Few labels: K in (10, 25, 50) frauds + proportional normals drawn from the reference half,
   five seeds; LogisticRegression (defaults) on the raw encoded features (baseline) vs. medssl's
   few-label default. AUPRC on the evaluation half.

medssl's defaults here, one configuration for both data sets (``DEFAULT_UNSUPERVISED`` and
``DEFAULT_FEW_LABEL``):

- unsupervised: the rank average (``ensemble``) of two ``pseudo_label`` scorers (self-training:
  skew-weighted ECOD picks the reference's top 5 % as pseudo-anomalies and its lower half as
  pseudo-normals, a logistic regression with C=0.1 separates them, score = its log-odds), one on
  the raw one-hot columns and one on ``[raw one-hot | SCARF embedding]``;
- few labels: ``LogisticRegressionCV`` (C in 0.01..10 picked by 3-fold average precision on the
  K labelled frauds and their normals only) on ``[raw one-hot | percentile of the unsupervised
  default's score]``.

Both were chosen before this script's evaluation half was looked at: on a labelled 50/50
validation split of each data set's *reference* half (three split seeds), among kNN (k 10-200),
Mahalanobis (Ledoit-Wolf, MCD), ECOD (plain, skew-weighted), IsolationForest, pseudo_label
(contamination 0.02/0.05/0.1) and their rank-averaged ensembles of up to three on raw /
embedding / both. Criterion: AUPRC / IsolationForest-on-raw AUPRC; rule: the best worst case
over every (data set, split seed), fewest members within 0.01. ``pseudo_label(x) +
pseudo_label(xz)`` was the best outright: worst 1.155, means 1.175 (ULB) / 2.21 (PaySim). The
single ``pseudo_label(x)`` has the best ULB mean (1.184) but its PaySim ratio swings from 0.74 to
2.56 over split seeds, which is why the rule looks at single splits. The previous default
(``ecod`` with ``tail="skew"`` on ``[raw one-hot | embedding]``, chosen with a mean-over-splits
rule before pseudo_label existed: 1.118) is kept as a row. ``benchmarks/_select_anomaly_transactions.py``
redoes that selection. The few-label recipe (chosen earlier among plain LR and LR-CV on raw, raw
one-hot, +embedding and +score features) is unchanged; its score feature follows the
unsupervised default.

Second pass (same protocol, reference halves only; ``_select_anomaly_transactions.py
--pseudo-label-variants`` and ``--few-label``): no candidate beat either default by more than the
selection tolerance, so both were kept. Unsupervised: 13 option sets of the pseudo_label members
(normal_quantile 0.3-0.9, C 0.01-1, contamination 0.03/0.07, ECOD / IsolationForest / kNN bases)
alone and as (x, xz) pairs: best worst case 1.156 against the default's 1.155; a scratch harness
with iterated self-training (2-3 rounds), quadratic / signed-log / quantile-normal features,
class weights and a kNN(embedding) third member found nothing above 1.156 either. On ULB's
validation splits the default (0.893 / 0.910 / 0.943 AUPRC) is within 0.03 of LogisticRegression
trained on *all* labels of the fit part (0.908 / 0.937 / 0.947, i.e. 1.19 / 1.24 / 1.16 x
IsolationForest): there the 1.2 x target sits at the supervised ceiling. Few labels (cell =
data set x K x split seed, mean over the five label seeds of AUPRC minus LogisticRegression on
raw): the default's worst cell is +0.009 (positive in all 18); self-training from the labelled
fit (top 5 % / p > 0.5 of the unlabelled pool as frauds, lower half as normals) reached +0.009 /
+0.010, member log-odds instead of the percentile +0.009 / +0.007, PU learning (labelled frauds
against the whole unlabelled pool, ULB 6.6 % and PaySim 17 % frauds) -0.063 / -0.157 (balanced),
pseudo_label seeded with the labelled frauds -0.132, the embedding as extra features -0.030.
The ``supervised reference`` line (LogisticRegression on raw, trained on every labelled row of
the reference half) is a ceiling for orientation, not a target or a medssl method.

The other rows below are reported for reference and are not used to pick anything. Writes
``benchmarks/results/anomaly_transactions.json`` and prints a table.
Run: ``.venv/bin/python benchmarks/anomaly_transactions.py [--epochs N]`` (selection used 10).
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
import torch
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.checkpoints import load_checkpoint
from medssl.data import get_domain, read_manifest, write_manifest
from medssl.data.transactions.encoding import one_hot_categoricals
from medssl.data.transactions.ingest import IngestOptions, ingest_transactions
from medssl.encoders import create_encoder
from medssl.anomaly import create_scorer
from medssl.train.embed import embed
from medssl.train.pretrain import pretrain

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "transactions"
RESULTS = REPO / "benchmarks" / "results" / "anomaly_transactions.json"
DATASETS = {"ulb_creditcard_a": "ulb_creditcard_a.csv", "paysim_sample": "paysim_sample.csv"}
SHOTS = (10, 25, 50)
SEEDS = (0, 1, 2, 3, 4)
SPLIT_SEED = 0
KNN_K = 10  # a priori (common default for kNN anomaly detection), not tuned
DEFAULT_UNSUPERVISED = "medssl ensemble(pseudo_label raw one-hot, pseudo_label raw one-hot+embedding) [default]"
DEFAULT_FEW_LABEL = "medssl logreg_cv(raw one-hot+score) [default]"
BASELINE_FEW_LABEL = "logreg(raw)"
IF_ROWS = ("isolation_forest(raw)", "isolation_forest(raw one-hot)")
LOGREG_CS = (0.01, 0.1, 1.0, 10.0)


def default_scorer(n_raw: int):
    """medssl's unsupervised default (see the module docstring) on ``[raw one-hot | embedding]``
    whose first ``n_raw`` columns are the raw one-hot features: the rank average of two
    ``pseudo_label`` scorers (defaults: skew-ECOD base, contamination 0.05, C 0.1), one on the raw
    one-hot columns and one on all columns."""
    return create_scorer("ensemble", members=[("pseudo_label", {}), ("pseudo_label", {})],
                         columns=[(0, n_raw), None])


def previous_default_scorer():
    """The unsupervised default before the pseudo_label scorer: skewness-weighted ECOD tails."""
    return create_scorer("ecod", tail="skew", skew_power=2.0)


def prepare(name: str, work: Path) -> Path:
    """Ingest and re-split 50/50 stratified (reference = "train", evaluation = "test")."""
    data_dir = work / name
    ingest_transactions(DATA / DATASETS[name], data_dir, IngestOptions())
    m = read_manifest(data_dir)
    ref, _ = train_test_split(np.arange(len(m)), test_size=0.5, stratify=m["label"], random_state=SPLIT_SEED)
    split = np.full(len(m), "test", dtype=object)
    split[ref] = "train"
    write_manifest(m.assign(split=split), data_dir)
    return data_dir


def medssl_embeddings(data_dir: Path, run_dir: Path, epochs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """SCARF-pretrain on the reference half; return (raw encoded features, the same with one-hot
    categoricals, embeddings, seconds)."""
    t0 = time.perf_counter()
    config = {"method": "scarf", "encoder": "tabular_mlp", "encoder_options": {"hidden": 256, "num_features": 64},
              "epochs": epochs, "batch_size": 256, "lr": 1e-3, "warmup_epochs": 1.0, "seed": 0, "accelerator": "cpu"}
    ckpt = load_checkpoint(pretrain(data_dir, run_dir, config), expect_kind="encoder")
    encoder = create_encoder(ckpt.meta["encoder"]["name"], **ckpt.meta["encoder"]["kwargs"])
    encoder.load_state_dict(ckpt.states["encoder"])
    m = read_manifest(data_dir)
    dataset = get_domain("transactions").make_dataset(data_dir, m, ckpt.meta["preprocessing"])
    z = embed(encoder, dataset).numpy().astype(np.float64)
    raw = dataset.items.numpy().astype(np.float64)
    raw_oh = one_hot_categoricals(raw, ckpt.meta["preprocessing"]).astype(np.float64)
    return raw, raw_oh, z, time.perf_counter() - t0




def unsupervised(raw: np.ndarray, raw_oh: np.ndarray, z: np.ndarray, ref: np.ndarray,
                 y: np.ndarray) -> dict[str, dict[str, float]]:
    """AUROC/AUPRC on the evaluation half of each unsupervised detector (fitted on the reference half).

    Every medssl row is a registered scorer (``medssl.anomaly``); none is tuned here.
    """
    ev = ~ref
    combo = np.hstack([raw, z])
    combo_oh = np.hstack([raw_oh, z])
    r, c, r_oh = raw.shape[1], combo.shape[1], raw_oh.shape[1]
    ens_members = [("ecod", {}), ("knn", {"k": KNN_K, "normalize": "standard"}), ("iforest", {})]
    detectors = {
        "isolation_forest(raw)": lambda: -IsolationForest(random_state=0).fit(raw[ref]).score_samples(raw[ev]),
        "isolation_forest(raw one-hot)": lambda: -IsolationForest(random_state=0).fit(raw_oh[ref]).score_samples(raw_oh[ev]),
        DEFAULT_UNSUPERVISED: lambda: default_scorer(r_oh).fit(combo_oh[ref]).score(combo_oh[ev]),
        "medssl pseudo_label(raw one-hot) [ablation: member 1]": lambda: create_scorer("pseudo_label").fit(
            raw_oh[ref]).score(raw_oh[ev]),
        "medssl pseudo_label(raw one-hot+embedding) [ablation: member 2]": lambda: create_scorer("pseudo_label").fit(
            combo_oh[ref]).score(combo_oh[ev]),
        "medssl ecod_skew(raw one-hot+embedding) [previous default]": lambda: previous_default_scorer().fit(
            combo_oh[ref]).score(combo_oh[ev]),
        "medssl ecod_skew(raw one-hot) [ablation: no embedding]": lambda: previous_default_scorer().fit(
            raw_oh[ref]).score(raw_oh[ev]),
        "medssl ecod_skew(embedding) [ablation: no raw]": lambda: previous_default_scorer().fit(z[ref]).score(z[ev]),
        "medssl knn(embedding)": lambda: create_scorer("knn", k=KNN_K, normalize="standard").fit(z[ref]).score(z[ev]),
        "medssl knn(raw+embedding)": lambda: create_scorer("knn", k=KNN_K, normalize="standard").fit(combo[ref]).score(combo[ev]),
        "medssl mahalanobis(embedding)": lambda: create_scorer("mahalanobis").fit(z[ref]).score(z[ev]),
        "medssl ecod(raw)": lambda: create_scorer("ecod").fit(raw[ref]).score(raw[ev]),
        "medssl ecod(embedding)": lambda: create_scorer("ecod").fit(z[ref]).score(z[ev]),
        "medssl ecod(raw+embedding)": lambda: create_scorer("ecod").fit(combo[ref]).score(combo[ev]),
        "medssl iforest(embedding)": lambda: create_scorer("iforest").fit(z[ref]).score(z[ev]),
        "medssl ensemble(raw+embedding)": lambda: create_scorer("ensemble").fit(combo[ref]).score(combo[ev]),
        "medssl ensemble(ecod raw, knn+iforest embedding)": lambda: create_scorer(
            "ensemble", members=ens_members, columns=[(0, r), (r, c), (r, c)]).fit(combo[ref]).score(combo[ev]),
        "knn(raw) [reference point]": lambda: create_scorer("knn", k=KNN_K, normalize="standard").fit(raw[ref]).score(raw[ev]),
    }
    out = {}
    for name, run in detectors.items():
        s = run()
        out[name] = {"auroc": float(roc_auc_score(y[ev], s)), "auprc": float(average_precision_score(y[ev], s))}
    return out


def logreg_cv(seed: int):
    """LogisticRegression with C picked by 3-fold CV (average precision) on the labelled rows only."""
    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    return make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=list(LOGREG_CS), cv=cv, scoring="average_precision",
                                                                max_iter=2000))


def few_label(raw: np.ndarray, raw_oh: np.ndarray, z: np.ndarray, ref: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean/std AUPRC over seeds of LR on raw features vs. medssl's few-label rows, K labelled frauds.

    The anomaly-score feature is the unsupervised default fitted on the (unlabelled) reference half.
    """
    ev = ~ref
    combo = np.hstack([raw, z])
    score = create_scorer("knn", k=KNN_K, normalize="standard").fit(combo[ref])
    medssl = np.hstack([raw, z, score.score(combo)[:, None]])
    combo_oh = np.hstack([raw_oh, z])
    default = default_scorer(raw_oh.shape[1]).fit(combo_oh[ref])
    medssl_default = np.hstack([raw_oh, default.percentile(default.score(combo_oh))[:, None] / 100.0])
    ref_idx = np.flatnonzero(ref)
    pos, neg = ref_idx[y[ref_idx] == 1], ref_idx[y[ref_idx] == 0]
    out = {}
    for k in SHOTS:
        n_neg = int(round(k * len(neg) / len(pos)))
        res: dict[str, list[float]] = {n: [] for n in FEW_LABEL_ROWS}
        for seed in SEEDS:
            rng = np.random.default_rng(seed)
            rows = np.concatenate([rng.choice(pos, k, replace=False), rng.choice(neg, n_neg, replace=False)])
            for name, feats, cv in ((BASELINE_FEW_LABEL, raw, False), (DEFAULT_FEW_LABEL, medssl_default, True),
                                    ("logreg_cv(raw) [reference point]", raw, True),
                                    ("medssl logreg(raw+embedding+knn score)", medssl, False)):
                model = logreg_cv(seed) if cv else make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
                clf = model.fit(feats[rows], y[rows])
                res[name].append(float(average_precision_score(y[ev], clf.predict_proba(feats[ev])[:, 1])))
        out[str(k)] = {n: {"auprc_mean": float(np.mean(v)), "auprc_std": float(np.std(v)), "n_normals": n_neg}
                       for n, v in res.items()}
    return out


def supervised_reference(raw: np.ndarray, ref: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Ceiling for orientation (not a target): the few-label baseline's LogisticRegression on raw
    features trained on *every* labelled row of the reference half; AUROC/AUPRC on the evaluation half."""
    p = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(raw[ref], y[ref]).predict_proba(raw[~ref])[:, 1]
    return {"auroc": float(roc_auc_score(y[~ref], p)), "auprc": float(average_precision_score(y[~ref], p)),
            "reference_frauds": int(y[ref].sum())}


FEW_LABEL_ROWS = (BASELINE_FEW_LABEL, DEFAULT_FEW_LABEL, "logreg_cv(raw) [reference point]",
                  "medssl logreg(raw+embedding+knn score)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="SCARF pretraining epochs (default 10, as in the selection)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    results: dict[str, object] = {"epochs": args.epochs, "knn_k": KNN_K, "split_seed": SPLIT_SEED, "seeds": list(SEEDS),
                                  "default_unsupervised": DEFAULT_UNSUPERVISED, "default_few_label": DEFAULT_FEW_LABEL}
    with tempfile.TemporaryDirectory() as tmp:
        for name in DATASETS:
            data_dir = prepare(name, Path(tmp))
            m = read_manifest(data_dir)
            y = m["label"].astype(int).to_numpy()
            ref = (m["split"] == "train").to_numpy()
            raw, raw_oh, z, secs = medssl_embeddings(data_dir, Path(tmp) / f"run_{name}", args.epochs)
            results[name] = {"n": len(m), "frauds": int(y.sum()), "pretrain_embed_seconds": round(secs, 1),
                             "unsupervised": unsupervised(raw, raw_oh, z, ref, y),
                             "supervised_reference": supervised_reference(raw, ref, y),
                             "few_label": few_label(raw, raw_oh, z, ref, y)}
    default = DEFAULT_UNSUPERVISED
    results["ratio_to_isolation_forest"] = {
        n: results[n]["unsupervised"][default]["auprc"] / max(results[n]["unsupervised"][r]["auprc"] for r in IF_ROWS)
        for n in DATASETS}
    results["few_label_minus_logreg"] = {
        n: {k: v[DEFAULT_FEW_LABEL]["auprc_mean"] - v[BASELINE_FEW_LABEL]["auprc_mean"] for k, v in results[n]["few_label"].items()}
        for n in DATASETS}
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    for name in DATASETS:
        r = results[name]
        print(f"\n== {name}: {r['n']} rows, {r['frauds']} frauds (evaluation half = 50%)")
        print(f"{'unsupervised':84s} {'AUROC':>7s} {'AUPRC':>7s}")
        for det, v in r["unsupervised"].items():
            print(f"{det:84s} {v['auroc']:7.3f} {v['auprc']:7.3f}")
        print(f"{default} / best IsolationForest AUPRC = {results['ratio_to_isolation_forest'][name]:.3f} (target >= 1.2)")
        sup, best_if = r["supervised_reference"], max(r["unsupervised"][i]["auprc"] for i in IF_ROWS)
        print(f"supervised reference (logreg(raw) on all {sup['reference_frauds']} labelled reference frauds; "
              f"ceiling, not a target): AUROC {sup['auroc']:.3f} AUPRC {sup['auprc']:.3f} = {sup['auprc'] / best_if:.3f} x IsolationForest")
        print(f"{'few-label AUPRC (mean±std, 5 seeds)':46s} " + " ".join(f"{'K=' + k:>15s}" for k in r["few_label"]))
        for method in FEW_LABEL_ROWS:
            cells = [f"{v[method]['auprc_mean']:.3f}±{v[method]['auprc_std']:.3f}" for v in r["few_label"].values()]
            print(f"{method:46s} " + " ".join(f"{c:>15s}" for c in cells))
    print(f"\ntotal {results['total_seconds']} s; wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
