"""``medssl finetune --checkpoint CKPT --data DATA_DIR --out RUN_DIR``: few-label fine-tuning."""

from __future__ import annotations

import argparse
import logging

from medssl.config import load_config

log = logging.getLogger(__name__)

DESCRIPTION = """\
Train a classifier on top of a pretrained encoder using only a few labels.

The labelled cases are drawn from the train split, exactly as many as asked: whole patients at
a time (--label-unit patient: a patient's cases are never divided; images, ICU stays) or a few
cases of every patient (--label-unit case: ECG beats, sensor windows; the default for signals). Labels come from --labels CSV
(columns case_id,label or patient_id,label) or else from the manifest's label column.

Modes:
  auto    (default) the data domain's few-label recipe, chosen by measurement and named in the
          checkpoint: for transactions, signals and ICU stays "recipe"; for images, while a class
          has fewer than 10 labelled cases, "full" on augmented views of the labelled images (the
          pretraining views: crops, flips, rotation, brightness, contrast, gamma, blur, noise), so
          the model also holds up on images from another scanner or site; with more, "linear"
          (README: "Does pretraining pay?"); metrics.json says which ran
  recipe  the domain's own recipe; transactions: a logistic regression (strength chosen by
          cross-validation on the labelled cases) on the raw columns + the anomaly percentile;
          signals: a logistic regression on [embedding | RR intervals of the beat], which
          blocks and strength chosen by record-grouped cross-validation on the labelled beats
          (the candidates' scores and the choice are in metrics.json, "selection"); ICU stays:
          the same on [embedding | per-variable summaries + static fields], grouped by patient
  linear  logistic regression on the frozen encoder's features (fast; a good first look)
  knn     the k nearest labelled cases vote (no training at all)
  full    the encoder is trained too, gently (smaller learning rate), class-weighted,
          stopped early on a patient-level validation split

In recipe mode the encoder stays frozen: its embeddings are kept in DATA_DIR/cache/embeddings/
and the next fine-tune of the same checkpoint on the same data (another --label-fraction, seed or
labels file) reads them instead of embedding every case again. Deleting that folder is safe.

Semi-supervised (--unlabelled): the train-split cases outside the labelled subset are used too,
without their labels (validation and test cases never are):
  spread    linear mode: the few labels are spread to them along the pretrained embeddings'
            nearest-neighbour graph (label spreading); the logistic regression is fitted on
            labelled + spread cases. Settings spread_k (default 10), spread_alpha (0.2),
            spread_class_mass (false) via --config.
  fixmatch  full mode (auto -> full): FixMatch consistency training; the model's confident
            prediction on an unlabelled case (top probability >= fixmatch_threshold, 0.95)
            becomes the target for a randomly augmented view of it (the domain's augmentation
            with the pretraining options, or unlabelled_augment); fixmatch_weight (1.0),
            unlabelled_batch_size (128) via --config.
  distill   linear or full mode (auto -> linear): SimCLRv2-style distillation; the fitted
            classifier (teacher) labels every unlabelled train case with its class probabilities
            (distill_temperature, 1.0), and a student started from the teacher is trained end to
            end on augmented views of labelled + teacher-labelled cases.
Whether they help depends on the data: measure it on yours with `medssl label-efficiency
--modes linear,full,spread,fixmatch,distill` (benchmarks/label_efficiency_pneumonia.py does so
on PneumoniaMNIST).

Writes RUN_DIR/model.pt (encoder + classifier + anomaly scorer; use it with `medssl evaluate`
and `medssl score`), RUN_DIR/metrics.json (validation metrics, and "baseline": a logistic regression
on the standardised raw inputs trained on the same labels and measured on the same val cases) and
RUN_DIR/config.yaml.
Full mode also writes its training log, RUN_DIR/logs/csv/metrics.csv (train loss per step and
epoch, validation AUROC and loss per epoch; --logger adds TensorBoard or MLflow), and draws it
as RUN_DIR/training_curves.png. Linear, knn and recipe modes have no training loop to log: one
fit (the recipe's cross-validation scores are in metrics.json, "selection").
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` subcommand."""
    p = subparsers.add_parser(
        "finetune", help="train a classifier on a pretrained encoder with few labels",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="checkpoint.pt from `medssl pretrain`, or a model.pt from an earlier fine-tune")
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="folder written by `medssl ingest`")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="folder for model.pt, metrics.json, config.yaml")
    p.add_argument("--labels", metavar="CSV", help="CSV with case_id,label or patient_id,label (default: manifest labels)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--label-fraction", type=float, metavar="F",
                      help="use this fraction (0-1] of the labelled train cases, e.g. 0.01 for 1%% (default: all)")
    size.add_argument("--shots", type=int, metavar="K", help="use exactly K labelled cases of every class")
    p.add_argument("--label-unit", choices=["auto", "case", "patient"],
                   help="how the labelled cases are drawn: case (a few cases of every patient; ECG beats, sensor "
                   "windows) or patient (whole patients) (default: auto = case for signals, patient otherwise)")
    p.add_argument("--mode", choices=["auto", "recipe", "linear", "knn", "full"],
                   help="how to train (default: auto = the data domain's few-label recipe)")
    p.add_argument("--unlabelled", choices=["ignore", "spread", "fixmatch", "distill"],
                   help="also learn from the unlabelled train cases: spread (linear mode, label spreading), fixmatch "
                   "(full mode, consistency with pseudo-labels), distill (teacher -> student on augmented views) "
                   "(default: ignore)")
    p.add_argument("--seed", type=int, help="random seed: which cases are drawn, and training (default: 0)")
    p.add_argument("--epochs", type=int, help="full mode: maximum training epochs (default: 30)")
    p.add_argument("--logger", choices=["csv", "tensorboard", "mlflow"],
                   help="full mode: experiment tracker beside the CSV log, tensorboard (RUN_DIR/logs/tensorboard) "
                   "or mlflow (RUN_DIR/mlflow.db, no server) (default csv; needs medssl[tracking])")
    p.add_argument("--config", metavar="YAML", help="YAML file overriding any fine-tuning setting")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in RUN_DIR (default: refuse; score files made with the old "
                   "model.pt keep its model_id)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the fine-tune described by ``args``; returns 0."""
    from medssl.train.finetune import FinetuneConfig, finetune

    config = load_config(
        FinetuneConfig, args.config, mode=args.mode, label_fraction=args.label_fraction,
        shots=args.shots, label_unit=args.label_unit, seed=args.seed, epochs=args.epochs, unlabelled=args.unlabelled,
        logger=args.logger,
    )
    path = finetune(args.checkpoint, args.data, args.out, config, labels_csv=args.labels, overwrite=args.overwrite)
    print(path)
    return 0
