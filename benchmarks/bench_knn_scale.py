"""Benchmark the kNN neighbour search from 10k to 1M references; writes
benchmarks/results/bench_knn_scale.json and prints a table.

Data: synthetic embeddings of dimension 128 shaped like an encoder's (a mixture of 1,000 overlapping clusters
in a 16-dimensional latent space mapped linearly to 128 features, plus isotropic noise of s.d. 1 per feature): real SSL
embeddings have a low effective rank, and uniform Gaussian noise in 128-D (no structure at all) is
a case no approximate index serves well. Queries: ``--queries`` new cases from the same distribution.

For each reference size M:
- exact: ``medssl.anomaly.neighbours.exact_search`` (the brute force the kNN scorer runs below
  ``EXACT_MAX``), over all queries: seconds per query case.
- faiss: ``NeighbourIndex(reference, exact_max=0)`` (IVF, as above ``EXACT_MAX``): build seconds,
  seconds per query case (candidates + the exact float64 distances the scorer uses), index memory
  (RSS growth over the build, and the faiss index's own bytes), recall@10 against exact (the
  share of the exact 10 nearest rows it returns), and the ratio of exact to faiss query cost.
- ``default_path``: which one ``KNNDistanceScorer`` takes at this size.

Usage: ``.venv/bin/python benchmarks/bench_knn_scale.py [--sizes 10000 100000 1000000] [--queries 1000]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from medssl.anomaly.neighbours import EXACT_MAX, NPROBE, NeighbourIndex, exact_search

DIM, LATENT, CLUSTERS, K = 128, 16, 1000, 10


def synthetic(n: int, seed: int) -> np.ndarray:
    """``(n, 128)`` float64 clustered embeddings (same mixture for every seed, new points per seed)."""
    base = np.random.default_rng(0)
    centres = base.normal(size=(CLUSTERS, LATENT)) * 1.5
    mixing = base.normal(size=(LATENT, DIM)) / np.sqrt(LATENT)  # latent scale kept per feature
    rng = np.random.default_rng(seed)
    z = centres[rng.integers(0, CLUSTERS, size=n)] + rng.normal(size=(n, LATENT))
    return z @ mixing + 1.0 * rng.normal(size=(n, DIM))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(m: int, n_queries: int) -> dict:
    ref = synthetic(m, seed=1)
    centre = ref.mean(axis=0)
    ref -= centre
    query = synthetic(n_queries, seed=2) - centre
    t0 = time.perf_counter()
    exact_dist, exact_idx = exact_search(query, ref, K)
    t_exact = time.perf_counter() - t0

    rss0 = rss_bytes()
    t0 = time.perf_counter()
    index = NeighbourIndex(ref, exact_max=0)
    t_build = time.perf_counter() - t0
    rss_build = rss_bytes() - rss0
    import faiss

    index_bytes = len(faiss.serialize_index(index._faiss))
    index.search(query[:50], K)  # warm-up
    t0 = time.perf_counter()
    dist, idx = index.search(query, K)
    t_query = time.perf_counter() - t0
    recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(idx, exact_idx.numpy())]))
    return {
        "references": m,
        "queries": n_queries,
        "default_path": "faiss_ivf" if m > EXACT_MAX else "exact",
        "exact_query_s_per_case": t_exact / n_queries,
        "faiss_build_s": t_build,
        "faiss_query_s_per_case": t_query / n_queries,
        "query_cost_ratio_exact_over_faiss": t_exact / t_query,
        "recall_at_10": recall,
        "mean_distance_rel_error": float(np.mean(dist.mean(1) / exact_dist.numpy().mean(1) - 1.0)),
        "faiss_rss_growth_bytes": rss_build,
        "faiss_index_bytes": index_bytes,
        "reference_float64_bytes": ref.nbytes,
        "nlist": int(index._faiss.nlist),
        "nprobe": int(index._faiss.nprobe),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_knn_scale.json"))
    args = parser.parse_args()
    rows = []
    for m in args.sizes:
        row = measure(m, args.queries)
        rows.append(row)
        print(f"M={m:>8}: exact {1e3 * row['exact_query_s_per_case']:.3f} ms/case | faiss build "
              f"{row['faiss_build_s']:.1f} s, {1e3 * row['faiss_query_s_per_case']:.3f} ms/case "
              f"({row['query_cost_ratio_exact_over_faiss']:.1f}x cheaper), recall@10 "
              f"{row['recall_at_10']:.4f}, index {row['faiss_index_bytes'] / 2**20:.0f} MiB", flush=True)
    load = os.getloadavg()
    result = {
        "command": "python benchmarks/bench_knn_scale.py " + " ".join(
            ["--sizes", *map(str, args.sizes), "--queries", str(args.queries)]),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "loadavg_at_end": load},
        "dim": DIM, "k": K, "exact_max": EXACT_MAX, "nprobe": NPROBE,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
