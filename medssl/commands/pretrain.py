"""``medssl pretrain --data DATA_DIR --out RUN_DIR``: self-supervised pretraining of an encoder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medssl.config import load_config
from medssl.train.pretrain_config import PretrainConfig

DESCRIPTION = """\
Learn an encoder from unlabeled cases (labels are never read). Trains on the manifest's
split == "train" rows. RUN_DIR receives:
  checkpoint.pt  the pretrained encoder (+ preprocessing, config), input to `medssl finetune`
  config.yaml    every setting the run used        metrics.csv  loss and learning rate per step
  last.ckpt      full training state each epoch, for --resume
  logs/csv/metrics.csv  everything the loop logged (Lightning's CSV log; --logger adds
                 TensorBoard in logs/tensorboard or MLflow in mlflow.db, a local SQLite store)
  training_curves.png   the loss curve, drawn at the end of the run
Settings come from the defaults, then --config YAML (see configs/), then the flags below.
Runs on the GPU when there is one; --devices/--num-nodes train on several GPUs or machines.
Stopped by SIGTERM (kill, a job scheduler, a container stop), it prints the command that
resumes the run and exits with code 143; --resume continues from the last finished epoch.
Each epoch's data order and augmentations follow from (seed, epoch) alone, so a resumed run
equals the uninterrupted one step for step (views are drawn in the training process; with
--num-workers > 0 only MICLe's partner draws, made in the workers, may differ). A NaN or infinite loss stops the run
with the step and likely cause; the last finished epoch's checkpoint.pt is kept.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` subcommand."""
    p = subparsers.add_parser(
        "pretrain",
        help="learn an encoder from unlabeled data (SimCLR, BYOL, DINO, MICLe, ...)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, type=Path, metavar="DATA_DIR", help="folder made by `medssl ingest`")
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="folder for this run's files")
    p.add_argument("--config", type=Path, metavar="YAML", help="settings file, e.g. configs/pneumoniamnist_simclr.yaml")
    p.add_argument("--method", help="contrastive: simclr, moco, micle (same-patient pairs); non-contrastive: byol, "
                   "dino, barlow_twins, vicreg; clustering: swav; masked modelling: simmim, masked_ehr, vime; "
                   "pretext: rotation, jigsaw; autoassociative: denoising_ae; series: ts2vec, cpc; tabular: scarf "
                   "(default simclr; `medssl methods` says what each learns and which data it serves)")
    p.add_argument("--encoder", help="backbone, e.g. small_cnn or resnet18 (default: the data's usual one)")
    p.add_argument("--epochs", type=int, metavar="N", help="passes over the training cases")
    p.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps (short trial runs)")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="stop after M minutes of training, a checkpoint saved (a time budget; the learning-rate "
                   "schedule still spans --epochs / --max-steps)")
    p.add_argument("--batch-size", type=int, metavar="B", help="cases per step on each device")
    p.add_argument("--lr", type=float, help="peak learning rate (after warm-up)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (same seed, same run)")
    p.add_argument("--limit-cases", type=int, metavar="N", help="use a random N of the training cases")
    p.add_argument("--num-workers", type=int, metavar="N", help="data-loading processes (default 0)")
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], help="default auto: a GPU if present")
    p.add_argument("--devices", type=int, metavar="N", help="GPUs (or CPU processes) per machine")
    p.add_argument("--num-nodes", type=int, metavar="N", help="machines taking part")
    p.add_argument("--logger", choices=["csv", "tensorboard", "mlflow"],
                   help="experiment tracker beside the CSV log: tensorboard (RUN_DIR/logs/tensorboard) or mlflow "
                   "(RUN_DIR/mlflow.db, no server) (default csv: the CSV log only; needs medssl[tracking])")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in RUN_DIR from its last epoch (settings from RUN_DIR/config.yaml unless --config)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config (defaults < YAML < flags) and run ``medssl.train.pretrain``."""
    from medssl.train.pretrain import PretrainingStopped, pretrain  # heavy imports (Lightning) only when needed
    from medssl.train.run_files import CONFIG_YAML

    config_path = args.config
    if config_path is None and args.resume and (args.out / CONFIG_YAML).is_file():
        config_path = args.out / CONFIG_YAML
    cfg = load_config(
        PretrainConfig,
        config_path,
        method=args.method,
        encoder=args.encoder,
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        limit_cases=args.limit_cases,
        num_workers=args.num_workers,
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        logger=args.logger,
    )
    try:
        path = pretrain(args.data, args.out, cfg, resume=args.resume)
    except PretrainingStopped as stop:  # not an error of the user's: no "error:" prefix
        print(f"medssl: {stop}", file=sys.stderr)
        return stop.exit_code
    print(path)
    return 0
