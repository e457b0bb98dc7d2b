"""``medssl evaluate --model MODEL --data DATA_DIR --out REPORT_JSON``: metrics with 95% CIs."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Measure a fine-tuned model on labelled cases it was not trained on.

Uses the manifest's test split if there is one, else its val split, else every case
(--split changes that). Writes REPORT_JSON with AUROC, AUPRC, accuracy, balanced accuracy,
macro F1, per-class precision/recall/F1/support and 95% confidence intervals (bootstrap that
resamples whole patients), and its plots beside it, named after it: for --out reports/cxr.json,
reports/cxr.roc.png, reports/cxr.pr.png and reports/cxr.confusion.png (so reports of several
models can share one folder).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser(
        "evaluate", help="AUROC/AUPRC/F1 with patient-level 95%% CIs, plus ROC/PR/confusion plots",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="MODEL", help="model.pt written by `medssl finetune`")
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="folder written by `medssl ingest`")
    p.add_argument("--out", required=True, metavar="REPORT_JSON", help="report file to write, e.g. reports/cxr.json (its plots go beside it)")
    p.add_argument("--labels", metavar="CSV", help="CSV with case_id,label or patient_id,label (default: manifest labels)")
    p.add_argument("--split", help="evaluate this split (train, val, test, or all) instead of the default")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even when it is not an earlier report (earlier reports are always replaced; inputs never)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples for the CIs (default 1000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print a one-line summary; returns 0."""
    from medssl.errors import ConfigError
    from medssl.eval.evaluate import evaluate

    if args.bootstrap < 10:
        raise ConfigError(f"--bootstrap must be at least 10, got {args.bootstrap}")
    report = evaluate(args.model, args.data, args.out, labels_csv=args.labels, split=args.split, n_boot=args.bootstrap,
                      overwrite=args.overwrite)
    m, ci = report["metrics"], report["ci95"]
    auroc = "n/a" if m["auroc"] is None else f"{m['auroc']:.3f}"
    ci_text = "" if not ci.get("auroc") else f" (95% CI {ci['auroc'][0]:.3f}-{ci['auroc'][1]:.3f})"
    print(f"{report['split']}: n={report['n']} AUROC {auroc}{ci_text} balanced accuracy {m['balanced_accuracy']:.3f} -> {args.out}")
    return 0
