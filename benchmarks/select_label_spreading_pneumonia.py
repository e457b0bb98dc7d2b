"""Choose the label-spreading settings for the pneumonia benchmark on the train split only.

The benchmark (``label_efficiency_pneumonia.py``) measures on the val split, so its settings must
not be chosen there. This script splits the *train* split (stratified, fixed seed) into a pool
(75%) and a selection hold-out (25%), draws labelled subsets of the benchmark's 1% size (39 cases)
from the pool, spreads their labels over the rest of the pool (unlabelled, as the benchmark does
with the whole train split), fits the linear probe on labelled + spread cases and measures AUROC
on the hold-out, which takes no part in the spreading. The plain probe on the labelled cases is
the reference. Prints one line per setting (mean and std over seeds) and writes
benchmarks/results/select_label_spreading_pneumonia.json.

    .venv/bin/python benchmarks/select_label_spreading_pneumonia.py --checkpoint /tmp/le/pretrain/checkpoint.pt \
        --data /tmp/le/data [--seeds 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core each: a shared machine
    os.environ.setdefault(_var, "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n-labelled", type=int, default=39, help="labelled cases per draw (1%% of 3882)")
    parser.add_argument("--ks", default="10,20,50,100", help="graph neighbours to try")
    parser.add_argument("--alphas", default="0.2,0.5", help="spread_alpha values to try")
    parser.add_argument("--class-mass", default="0,1", help="spread_class_mass values to try (0/1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "select_label_spreading_pneumonia.json",
                        help="JSON result (give one per checkpoint when comparing checkpoints)")
    args = parser.parse_args()
    import torch
    from sklearn.model_selection import train_test_split

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="max_iter=")  # LabelSpreading: 100 iterations are plenty here
    from medssl.metrics import point_metrics
    from medssl.models import embed
    from medssl.train.finetune_data import load_data
    from medssl.train.probe import linear_probe
    from medssl.train.label_spreading import spread_labels
    from medssl.train.labels import draw_labelled_subset
    from medssl.models import build_encoder

    data = load_data(args.checkpoint, args.data)
    encoder = build_encoder(data.checkpoint.meta, data.checkpoint.states["encoder"])
    emb = embed(encoder, data.dataset).numpy()
    train = np.flatnonzero(data.split == "train")
    y_all = np.array([int(v) if v is not None else -1 for v in data.labels])
    pool_rows, hold_rows = train_test_split(train, test_size=0.25, stratify=y_all[train], random_state=12345)
    pool = np.zeros(len(y_all), bool)
    pool[pool_rows] = True
    fraction = args.n_labelled / len(pool_rows)

    def probe_auroc(rows: np.ndarray, y: np.ndarray, seed: int) -> float:
        head = linear_probe(emb[rows], y, data.patient_ids[rows], 2, seed)
        with torch.no_grad():
            logits = head(torch.as_tensor(emb[hold_rows]))
        return point_metrics(y_all[hold_rows], torch.softmax(logits.double(), 1).numpy())["auroc"]

    settings = [("probe only", None, None, None)] + [
        (f"spread k={k} alpha={a} class_mass={bool(int(c))}", int(k), float(a), bool(int(c)))
        for k, a, c in itertools.product(*(v.split(",") for v in (args.ks, args.alphas, args.class_mass)))
        if k and a and c  # --ks "" compares checkpoints by the plain probe only
    ]
    scores: dict[str, list[float]] = {name: [] for name, _, _, _ in settings}
    for seed in range(args.seeds):
        subset = draw_labelled_subset(data.patient_ids, data.labels, pool=pool, fraction=fraction, seed=seed)
        unl = np.setdiff1d(pool_rows, subset)
        for name, k, alpha, class_mass in settings:
            if k is None:
                auc = probe_auroc(subset, y_all[subset], seed)
            else:
                proba = spread_labels(emb[subset], y_all[subset], emb[unl], 2, k=k, alpha=alpha, class_mass=class_mass)
                rows = np.concatenate([subset, unl])
                auc = probe_auroc(rows, np.concatenate([y_all[subset], proba.argmax(1)]), seed)
            scores[name].append(auc)
        print(f"seed {seed}: n={len(subset)} " + " ".join(f"{v[-1]:.3f}" for v in scores.values()), flush=True)
    rows_out = [{"setting": n, "auroc_mean": float(np.mean(v)), "auroc_std": float(np.std(v)), "auroc": v}
                for n, v in scores.items()]
    for r in sorted(rows_out, key=lambda r: -r["auroc_mean"]):
        print(f"{r['setting']:<44} {r['auroc_mean']:.4f} +- {r['auroc_std']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {"checkpoint": str(args.checkpoint), "n_pool": len(pool_rows), "n_holdout": len(hold_rows),
           "n_labelled": args.n_labelled, "seeds": args.seeds, "results": rows_out}
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
