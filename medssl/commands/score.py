"""``medssl score --model MODEL --data DATA_DIR --out SCORES_PARQUET [--engine local|ray] [--runtime torch|onnx]``."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Score every case of DATA_DIR with a trained model and write one row per case to SCORES_PARQUET:

  case_id, patient_id, domain, anomaly_score, anomaly_percentile, flagged,
  predicted_label, predicted_proba, model_id, scored_at

anomaly_score: how unusual the case looks to the model (higher = more unusual);
anomaly_percentile: where that falls among the model's reference cases (0-100).
predicted_label / predicted_proba: the most likely label and its probability, when MODEL is a
fine-tuned model (`medssl finetune`); empty for a pretrained encoder (`medssl pretrain`).
flagged: cases for the review queue (--flag-top / --flag-percentile, default percentile >= 95).
model_id: content hash of MODEL, so every score can be traced to the exact model file.

Cases whose input cannot be read go to SCORES.errors.csv (case_id, path, reason); the job goes on.
The job works in chunks and can be killed at any time: re-run it with --resume to continue.

Example:
  medssl score --model runs/ft/model.pt --data data/cxr --out scores/cxr.parquet --flag-top 50
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``score`` subcommand."""
    p = subparsers.add_parser(
        "score",
        help="score new cases with a trained model: anomaly score, prediction, review flag",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="model.pt from `medssl finetune`, or checkpoint.pt from `medssl pretrain`")
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="folder made by `medssl ingest` (has manifest.parquet)")
    p.add_argument("--out", required=True, metavar="SCORES_PARQUET", help="Parquet file to write the scores to")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this machine (default); ray: a Ray cluster (needs `pip install medssl[ray]`)")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="join the Ray cluster at ADDR ('auto' or HOST:PORT); default: start a local one. "
                   "Every node must see MODEL and DATA_DIR at the same paths")
    p.add_argument("--ray-workers", type=int, default=None, metavar="N",
                   help="number of Ray actors holding the model (default: one per CPU of the cluster)")
    flag = p.add_mutually_exclusive_group()
    flag.add_argument("--flag-top", type=int, default=None, metavar="K",
                      help="flag the K cases with the highest anomaly scores")
    flag.add_argument("--flag-percentile", type=float, default=None, metavar="P",
                      help="flag cases whose anomaly percentile is at least P (0-100; default: the "
                      "model's own rule, 95)")
    p.add_argument("--embeddings", default=None, metavar="OUT",
                   help="also write each case's embedding vector (case_id, embedding) to this Parquet file")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its finished chunks (same model and data only)")
    p.add_argument("--chunk-size", type=int, default=2048, metavar="N",
                   help="cases per chunk: the unit of work, of memory use and of resuming (default 2048)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="cases per model forward pass (default 256)")
    p.add_argument("--num-workers", type=int, default=0, metavar="N",
                   help="background processes decoding inputs, local engine (default 0: in process)")
    p.add_argument("--reference-split", default="train", metavar="SPLIT",
                   help="when MODEL carries no anomaly reference statistics (a pretrained encoder), fit "
                   "them on the DATA_DIR cases of this split (default train)")
    p.add_argument("--scorer", default=None, metavar="NAME",
                   help="refit the anomaly scores with this scorer (knn, ecod, iforest, mahalanobis, pseudo_label, "
                   "ensemble, ...) on the --reference-split cases, instead of the model's own. Default: the model's "
                   "scorer, or for a pretrained encoder its data domain's anomaly recipe")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out / --embeddings even when they are not earlier medssl score files "
                   "(earlier score files are always replaced; inputs never)")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="torch: run the model file (default); onnx: run MODEL = model.onnx from `medssl export "
                   "onnx` in onnxruntime on the CPU (local engine)")
    p.add_argument("--no-explain", dest="explain", action="store_false",
                   help="skip the 'why flagged' explanation of each flagged case (by default each flagged case is "
                   "re-scored with one part at a time (a column, variable, time window or image region) set to its "
                   "typical value, and the parts that make it unusual are named in the explanation column)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs: auto = a GPU when there is one (default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the scoring job; print a one-line summary."""
    from medssl.scoring.job import score

    summary = score(
        args.model, args.data, args.out,
        engine=args.engine, ray_address=args.ray_address, ray_workers=args.ray_workers,
        flag_top=args.flag_top, flag_percentile=args.flag_percentile, embeddings_out=args.embeddings,
        resume=args.resume, chunk_size=args.chunk_size, batch_size=args.batch_size,
        num_workers=args.num_workers, reference_split=args.reference_split, device=args.device,
        scorer=args.scorer, overwrite=args.overwrite, runtime=args.runtime, explain=args.explain,
    )
    print(
        f"scored {summary.n_scored} cases ({summary.n_flagged} flagged, {summary.n_errors} not scored) "
        f"-> {summary.out}"
    )
    return 0
