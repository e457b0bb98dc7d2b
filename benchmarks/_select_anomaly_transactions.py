"""How ``anomaly_transactions.py``'s unsupervised default was chosen, without its evaluation half.

For each data set: the same ingest and 50/50 split as the benchmark, SCARF pretrained on the
reference half (no labels, as in the benchmark), then the *reference half only* is split 50/50
again (stratified, split seeds 1, 2, 3) into a fit part and a labelled validation part. Every
candidate scorer (kNN k=10/200, Mahalanobis Ledoit-Wolf and MCD, ECOD plain and skew-weighted
with power 1 and 2, IsolationForest, pseudo_label with contamination 0.02/0.05/0.1) on every view
(raw one-hot ``x``, embedding ``z``, both ``xz``), and every rank average of two or three of
them, is fitted on the fit part and scored on the validation part. Criterion: AUPRC /
IsolationForest-on-raw AUPRC (same parts). Rule ``split`` (in force): the best worst case over
every (data set, split seed) pair, then the fewest members within ``TOLERANCE`` (0.01), then the
higher worst case. Rule ``mean`` (the earlier one, printed for comparison): the same on the worst
data set of split-seed means. Figures (10 epochs): rule ``split`` picks ``pl05(x) + pl05(xz)`` at
1.155 (means 1.175 ULB / 2.212 PaySim), the best outright; rule ``mean`` would pick ``pl05(x)``
at 1.184, whose PaySim ratios are 1.37 / 2.56 / 0.74 over the three splits, the reason for the
switch to ``split``. Before pseudo_label existed, rule ``mean``'s best worst case was a
three-member ensemble at 1.124 and ``ecod_skew2(xz)`` (the previous default) reached 1.118.
Prints the best rows under both rules. Not part of ``make bench`` (about 6 minutes on 2 loaded
cores).
Run: ``.venv/bin/python benchmarks/_select_anomaly_transactions.py [--epochs 10]``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.covariance import MinCovDet
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly_transactions as bench

from medssl.data import read_manifest
from medssl.scoring.scorers import create_scorer

VAL_SEEDS = (1, 2, 3)
TOLERANCE = 0.01


def _registered(name: str, **kw):
    def run(f: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = create_scorer(name, **kw).fit(f)
        return s.reference_scores_, s.score(v)
    return run


def _mcd(f: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = MinCovDet(random_state=0, support_fraction=0.75).fit(f)
    return m.mahalanobis(f), m.mahalanobis(v)


CANDIDATES = {
    "knn10s": _registered("knn", k=10, normalize="standard"),
    "knn200s": _registered("knn", k=200, normalize="standard"),
    "maha": _registered("mahalanobis"),
    "mcd75": _mcd,
    "ecod": _registered("ecod"),
    "ecod_skew1": _registered("ecod", tail="skew", skew_power=1.0),
    "ecod_skew2": _registered("ecod", tail="skew", skew_power=2.0),
    "if": _registered("iforest"),
    "pl02": _registered("pseudo_label", contamination=0.02),
    "pl05": _registered("pseudo_label", contamination=0.05),
    "pl10": _registered("pseudo_label", contamination=0.1),
}


def _pct(ref_scores: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(ref_scores), scores, side="right") / len(ref_scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # MCD's determinant warnings
    ratios: dict[tuple[str, ...], dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in bench.DATASETS:
            data_dir = bench.prepare(name, Path(tmp))
            m = read_manifest(data_dir)
            y = m["label"].astype(int).to_numpy()
            ref_idx = np.flatnonzero((m["split"] == "train").to_numpy())
            raw, raw_oh, z, _ = bench.medssl_embeddings(data_dir, Path(tmp) / f"run_{name}", args.epochs)
            views = {"x": raw_oh, "z": z, "xz": np.hstack([raw_oh, z])}
            for seed in VAL_SEEDS:
                fit, val = train_test_split(ref_idx, test_size=0.5, stratify=y[ref_idx], random_state=seed)
                base = average_precision_score(
                    y[val], -IsolationForest(random_state=0).fit(raw[fit]).score_samples(raw[val]))
                scores = {f"{c}({v})": run(views[v][fit], views[v][val])
                          for v in views for c, run in CANDIDATES.items()}
                for r in (1, 2, 3):
                    for combo in itertools.combinations(sorted(scores), r):
                        s = scores[combo[0]][1] if r == 1 else np.mean([_pct(*scores[c]) for c in combo], axis=0)
                        ratios.setdefault(combo, {}).setdefault(name, []).append(average_precision_score(y[val], s) / base)
    rules = {"split": lambda v: min(min(v[n]) for n in bench.DATASETS),  # in force: worst (data set, split seed)
             "mean": lambda v: min(np.mean(v[n]) for n in bench.DATASETS)}  # earlier: worst data set's mean
    for rule, worst in rules.items():
        rows = sorted(((worst(v), len(k), k, v) for k, v in ratios.items()), key=lambda r: -r[0])
        near = [r for r in rows if r[0] >= rows[0][0] - TOLERANCE]
        chosen = min(near, key=lambda r: (r[1], -r[0]))
        print(f"\n== rule {rule!r}: {'worst':>6s} " + " ".join(f"{n[:8] + ' mean':>13s}" for n in bench.DATASETS)
              + "  configuration (ratio to IsolationForest; per split seed in brackets)")
        for w, _, combo, v in rows[: args.top]:
            print(f"{w:23.3f} " + " ".join(f"{np.mean(v[n]):13.3f}" for n in bench.DATASETS) + "  " + " + ".join(combo)
                  + "  " + " ".join("[" + ",".join(f"{r:.2f}" for r in v[n]) + "]" for n in bench.DATASETS))
        print(f"rule {rule!r}: best worst case {rows[0][0]:.3f}; chosen (fewest members within {TOLERANCE}): "
              f"{' + '.join(chosen[2])} at {chosen[0]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
