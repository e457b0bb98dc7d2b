"""Benchmark ``import_scores``: rows/s of loading a score file into a real SQLite review store.

Writes benchmarks/results/bench_review_import.json and prints it. The score file is synthetic
(``--n`` rows with the ``medssl score`` columns, a third of patients with 3 cases, 1 in 7 without
a predicted label) so that sizes beyond the bundled data can be timed. Measures the first import
and a re-import of the same file (every row an update), in one run.

    .venv/bin/python benchmarks/bench_review_import.py [--n 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medssl.review import import_scores, make_engine  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "bench_review_import.json"


def score_file(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    stamps = pd.to_datetime(["2026-11-23 19:00:00.123456+00:00", "2026-11-23 19:00:01+00:00"], format="ISO8601")
    pd.DataFrame({
        "case_id": [f"c{i}" for i in range(n)], "patient_id": [f"p{i // 3}" for i in range(n)], "domain": "imaging",
        "anomaly_score": rng.random(n), "anomaly_percentile": rng.random(n) * 100, "flagged": rng.random(n) > 0.9,
        "predicted_label": pd.array([None if i % 7 == 0 else ("pneumonia" if i % 2 else "normal") for i in range(n)], dtype=object),
        "predicted_proba": np.where(np.arange(n) % 7 == 0, np.nan, rng.random(n)), "model_id": "abc123",
        "scored_at": stamps[rng.integers(0, 2, n)],
    }).to_parquet(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000, help="rows in the score file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_review_import_"))
    try:
        score_file(tmp / "scores.parquet", args.n)
        (tmp / "data").mkdir()
        engine = make_engine(f"sqlite:///{tmp / 'review.db'}")
        t = time.perf_counter()
        import_scores(engine, tmp / "scores.parquet", tmp / "data")
        first = time.perf_counter() - t
        t = time.perf_counter()
        import_scores(engine, tmp / "scores.parquet", tmp / "data")
        again = time.perf_counter() - t
        result = {
            "benchmark": "import_scores into a SQLite review store (synthetic score file)",
            "n": args.n, "first_import_s": round(first, 3), "reimport_s": round(again, 3),
            "first_rows_per_s": round(args.n / first), "reimport_rows_per_s": round(args.n / again),
            "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
