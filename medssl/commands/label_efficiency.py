"""``medssl label-efficiency --checkpoint CKPT --data DATA_DIR --out DIR``: how many labels are needed."""

from __future__ import annotations

import argparse

from medssl.errors import ConfigError

DESCRIPTION = """\
Answer "how many labels do I need, and how much did pretraining buy me?".

For each label fraction and seed, one labelled subset of the train split is drawn (whole
patients) and used to train: a linear probe on the pretrained encoder (linear), the pretrained
encoder fine-tuned (full), optionally kNN (knn) and the semi-supervised methods that also use the
unlabelled train cases (their labels never): label spreading into the probe (spread), full
fine-tuning with FixMatch consistency (fixmatch), and a SimCLRv2-style student distilled from the
linear probe on augmented views of every train case (distill); and the same architecture trained
from random weights on the same labels (supervised, the no-pretraining baseline; with
--supervised-unlabelled also given fixmatch and/or distill, as supervised_fixmatch/_distill). All are measured on the
test split (else val), never used for training or early stopping.

Writes DIR/label_efficiency.csv (one row per run), DIR/label_efficiency.json (runs + mean/std
summary) and DIR/label_efficiency.png (AUROC vs % of labels, log scale).
"""


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``label-efficiency`` subcommand."""
    p = subparsers.add_parser(
        "label-efficiency", help="AUROC vs fraction of labels: pretrained vs trained from scratch",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="checkpoint.pt from `medssl pretrain`")
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="folder written by `medssl ingest`")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the CSV, JSON and PNG")
    p.add_argument("--labels", metavar="CSV", help="CSV with case_id,label or patient_id,label (default: manifest labels)")
    p.add_argument("--fractions", type=_floats, default=[0.01, 0.05, 0.1, 0.25, 1.0], metavar="LIST",
                   help="label fractions of the labelled train cases (default 0.01,0.05,0.1,0.25,1.0)")
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2], metavar="LIST", help="seeds per fraction (default 0,1,2)")
    p.add_argument("--modes", default="linear,full", metavar="LIST",
                   help="pretrained-encoder methods among linear,knn,full,spread,fixmatch,distill (default linear,full)")
    p.add_argument("--supervised-unlabelled", default="", metavar="LIST",
                   help="also train the from-scratch baseline with these semi-supervised methods (fixmatch,distill)")
    p.add_argument("--no-supervised", action="store_true", help="skip the trained-from-scratch baseline")
    p.add_argument("--epochs", type=int, help="maximum epochs of full fine-tuning (default 30)")
    p.add_argument("--supervised-epochs", type=int, metavar="N", help="maximum epochs of the from-scratch baseline")
    p.add_argument("--split", help="measure on this split instead of test (else val)")
    p.add_argument("--config", metavar="YAML", help="YAML file overriding fine-tuning settings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the curve and print the summary table; returns 0."""
    from medssl.config import load_config
    from medssl.eval.label_efficiency import run_label_efficiency, summarize
    from medssl.train.finetune import FinetuneConfig

    if not args.fractions or any(not 0 < f <= 1 for f in args.fractions):
        raise ConfigError(f"--fractions must be numbers in (0, 1], got {args.fractions}")
    if not args.seeds:
        raise ConfigError("--seeds needs at least one seed")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    base = load_config(FinetuneConfig, args.config, epochs=args.epochs)
    table = run_label_efficiency(
        args.checkpoint, args.data, args.out, fractions=args.fractions, seeds=args.seeds, modes=modes,
        supervised=not args.no_supervised, supervised_epochs=args.supervised_epochs,
        labels_csv=args.labels, split=args.split, base_config=base,
        supervised_unlabelled=[m.strip() for m in args.supervised_unlabelled.split(",") if m.strip()],
    )
    print(summarize(table).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
