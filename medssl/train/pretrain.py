"""Domain-agnostic self-supervised pretraining: ``pretrain(data_dir, out_dir, config) -> checkpoint.pt``.

Everything domain-specific comes from ``get_domain(manifest.domain)``: the dataset (and its fitted
preprocessing), the augmentation, the default encoder and the encoder kwargs that follow from the
data. The method comes from the method registry, the encoder from the encoder registry; the pair
dataset pairs cases as the method's ``pairing`` asks. The cases are held in memory when they fit
(``medssl.data.in_memory``) and the domain's augmentation runs on whole batches on the training
device (``PretrainModule(augment=...)``). Labels are never read.
"""

from __future__ import annotations

import inspect
import logging
import re
import shlex
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities.exceptions import SIGTERMException
from pydantic import TypeAdapter, ValidationError
from torch.utils.data import DataLoader, RandomSampler

import medssl.encoders.builtin  # noqa: F401  (registers the built-in encoders)
import medssl.methods.builtin  # noqa: F401  (registers the built-in methods)
from medssl.config import load_config
from medssl.data.domains import get_domain
from medssl.data.in_memory import hold_in_memory
from medssl.data.manifest import read_manifest
from medssl.data.pairs import PairDataset
from medssl.encoders.registry import ENCODERS, create_encoder
from medssl.errors import CheckpointError, ConfigError, DataError, MedsslError
from medssl.methods.base import METHODS, create_method
from medssl.outputs import refuse_inputs
from medssl.progress import is_quiet
from medssl.train.guards import EpochSeeds, FiniteLoss
from medssl.train.lightning_module import PretrainModule
from medssl.train.pretrain_config import PretrainConfig
from medssl.train.progress_bar import EpochProgressBar, planned_epochs
from medssl.train.tracking import make_logger, plot_curves
from medssl.train.run_files import (
    ENCODER_CKPT,
    LAST_CKPT,
    METRICS_CSV,
    RunFiles,
    truncate_metrics,
)
from medssl.transforms.batched import batched

log = logging.getLogger(__name__)

SIGTERM_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM


class PretrainingStopped(MedsslError):
    """Pretraining was stopped by SIGTERM (a scheduler, ``kill``, a container stop); resumable."""

    exit_code = SIGTERM_EXIT_CODE


def training_rows(manifest: pd.DataFrame, limit_cases: int | None, seed: int) -> pd.DataFrame:
    """The rows pretraining uses: ``split == "train"`` when there is a split column, else all.

    ``limit_cases`` keeps a seeded random subset (in manifest order). Raises ``DataError`` if empty.
    """
    rows = manifest
    if "split" in manifest.columns:
        rows = manifest[manifest["split"].astype(object) == "train"]
        if rows.empty:
            raise DataError(
                "the manifest has a split column but no row with split == 'train'; re-run the ingest "
                "(it assigns patient-level splits) or remove the split column to train on every case"
            )
    if limit_cases is not None and limit_cases < len(rows):
        rows = rows.sample(n=limit_cases, random_state=seed).sort_index()
    return rows.reset_index(drop=True)


def _check_kwargs(
    kind: str, name: str, factory: Callable[..., Any], given: dict[str, Any], key: str, typed: dict[str, Any] | None = None
) -> None:
    """Raise ``ConfigError`` when ``given`` names an argument ``factory`` does not take, or when a
    value of ``typed`` (the user's own options) does not fit the argument's annotation."""
    params = inspect.signature(factory, eval_str=True).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n in params if n not in ("self", "encoder")]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{key} has option(s) {unknown} that {kind} {name!r} does not take; it accepts {accepted}"
        )
    for option, value in (typed or {}).items():
        annotation = params[option].annotation
        if annotation is inspect.Parameter.empty:
            continue
        try:
            TypeAdapter(annotation).validate_python(value, strict=True)
        except ValidationError:
            raise ConfigError(
                f"{key}.{option} of {kind} {name!r} must be {getattr(annotation, '__name__', annotation)}, "
                f"got {value!r}"
            ) from None


def _probe_encoder(encoder: torch.nn.Module, name: str, sample: torch.Tensor, domain: str) -> None:
    """One eval-mode forward of one case (no state changes); an encoder that cannot read the data
    fails here with a ``ConfigError`` instead of a shape traceback in the first training step."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            encoder(sample.unsqueeze(0))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"encoder {name!r} cannot read {domain} cases of shape {tuple(sample.shape)} ({first}); "
            f"use an encoder made for {domain} data or leave encoder unset for the domain's default"
        ) from None
    finally:
        encoder.train(was_training)


def _check_accelerator(cfg: PretrainConfig) -> None:
    """``accelerator: gpu`` needs as many visible GPUs as ``devices``; else one ``ConfigError`` line."""
    if cfg.accelerator != "gpu":
        return
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        raise ConfigError(
            f"accelerator gpu: torch sees no GPU on this machine (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda or 'none'}); use --accelerator cpu, or auto to take a GPU only when there is one"
        )
    if cfg.devices > visible:
        raise ConfigError(f"devices {cfg.devices}: this machine has {visible} GPU(s); lower --devices")


def _strategy(cfg: PretrainConfig) -> str | DDPStrategy:
    if cfg.devices * cfg.num_nodes == 1:
        return "auto"
    on_cpu = cfg.accelerator == "cpu" or (cfg.accelerator == "auto" and not torch.cuda.is_available())
    return DDPStrategy(process_group_backend="gloo" if on_cpu else None)


def resolve_config(config: PretrainConfig | dict[str, Any] | str | Path | None) -> PretrainConfig:
    """A ``PretrainConfig`` from an instance, a dict of overrides, a YAML path, or ``None`` (defaults)."""
    if isinstance(config, PretrainConfig):
        return config
    if config is None:
        return PretrainConfig()
    if isinstance(config, dict):
        return load_config(PretrainConfig, None, **config)
    return load_config(PretrainConfig, config)



class _NoAdverts(logging.Filter):
    """Drops Lightning's product tips (e.g. the litlogger advert) from the run's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def tidy_lightning_logging() -> None:
    """One copy of each Lightning line, in medssl's log format and level, without product adverts.

    Imported after the CLI configured logging, Lightning adds a handler of its own to the
    ``lightning`` logger that also propagates to the root: every line would print twice. It also
    sets its loggers to INFO, which would print its INFO lines under ``medssl -q``: they follow
    the root logger's level instead.
    """
    logging.getLogger("lightning").handlers.clear()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    # Lightning 2.6 calls a torch pytree API that torch 2.15 deprecates; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in logger.filters):
        logger.addFilter(_NoAdverts())


def pretrain(
    data_dir: str | Path,
    out_dir: str | Path,
    config: PretrainConfig | dict[str, Any] | str | Path | None = None,
    resume: bool = False,
) -> Path:
    """Pretrain an encoder on the unlabeled train cases of ``data_dir``; returns ``out_dir/checkpoint.pt``.

    ``out_dir`` receives ``config.yaml``, ``metrics.csv``, ``last.ckpt`` and ``checkpoint.pt`` (see
    ``medssl.train.run_files``), the ``logs/`` of ``config.logger`` and ``training_curves.png``
    (``medssl.train.tracking``). ``resume=True`` continues from ``out_dir/last.ckpt`` at its saved
    step; without it an ``out_dir`` that already holds a run is refused (nothing is overwritten).
    """
    cfg = resolve_config(config)
    data_dir, run_dir = Path(data_dir), Path(out_dir)
    refuse_inputs(run_dir, {"--data": data_dir, "--config": config if isinstance(config, (str, Path)) else None})
    last = run_dir / LAST_CKPT
    if resume and not last.is_file():
        raise ConfigError(
            f"cannot resume: {run_dir} holds no previous run ({LAST_CKPT} is missing); "
            "run without --resume to start a new one"
        )
    if resume:
        try:
            step = int(torch.load(last, map_location="cpu", weights_only=True)["global_step"])
        except Exception as exc:  # truncated, foreign or not a Lightning checkpoint at all
            first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"cannot resume: {last} is not a readable Lightning checkpoint ({first}); "
                "start a new run with another --out"
            ) from None
    if not resume and (last.is_file() or (run_dir / ENCODER_CKPT).is_file()):
        raise ConfigError(
            f"{run_dir} already holds a pretraining run; pass --resume to continue it, "
            "or choose a new --out directory"
        )

    _check_accelerator(cfg)
    method_cls = METHODS.get(cfg.method)  # unknown names: "did you mean"
    manifest = read_manifest(data_dir)
    domains = manifest["domain"].astype(str).unique().tolist()
    if len(domains) != 1:
        raise DataError(f"the manifest mixes domains {domains}; pretrain one domain per DATA_DIR")
    domain = get_domain(domains[0])
    supported = getattr(method_cls, "supported_domains", None)
    if supported is not None and domain.name not in supported:
        raise ConfigError(f"method {cfg.method!r} works on {list(supported)} data, not {domain.name!r}")
    _check_kwargs("method", cfg.method, method_cls, cfg.method_options, "method_options", cfg.method_options)

    from medssl.domains import anomaly_recipe, few_label_recipe

    recipes = {"anomaly": anomaly_recipe(cfg.anomaly_recipe, domain.name).name,  # unknown names fail now
               "few_label": few_label_recipe(cfg.few_label_recipe, domain.name).name}
    rows = training_rows(manifest, cfg.limit_cases, cfg.seed)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dataset = domain.make_dataset(data_dir, rows, cfg.preprocessing)
    encoder_name = cfg.encoder or domain.encoder_for(dataset.preprocessing)
    encoder_kwargs = {**domain.encoder_kwargs(dataset), **cfg.encoder_options}
    _check_kwargs(
        "encoder", encoder_name, ENCODERS.get(encoder_name), encoder_kwargs, "encoder_options", cfg.encoder_options
    )
    try:  # a value out of range (width 0, an unknown partner rule) is the config's fault
        encoder = create_encoder(encoder_name, **encoder_kwargs)
    except ValueError as exc:
        raise ConfigError(f"encoder {encoder_name!r} rejects its options {encoder_kwargs}: {exc}") from None
    except (MemoryError, RuntimeError) as exc:  # e.g. width 1e6: terabytes of weights
        asked = re.search(r"allocate (\d+) bytes", str(exc))
        why = f"one layer alone needs {int(asked.group(1)) / 2**30:,.0f} GiB" if asked else type(exc).__name__
        raise ConfigError(
            f"encoder {encoder_name!r} with options {cfg.encoder_options} cannot be built on this machine "
            f"({why}); lower encoder_options such as width"
        ) from None
    try:
        method = create_method(cfg.method, encoder, **cfg.method_options)
    except ValueError as exc:
        raise ConfigError(f"method {cfg.method!r} rejects method_options {cfg.method_options}: {exc}") from None

    world = cfg.devices * cfg.num_nodes
    batch_size = cfg.batch_size
    if len(rows) < 2 * world:
        raise DataError(f"pretraining needs at least {2 * world} training cases, the manifest has {len(rows)}")
    if len(rows) < batch_size * world:
        batch_size = len(rows) // world
        log.warning("only %d training cases: batch size lowered to %d per device", len(rows), batch_size)
    augment = batched(domain.make_augment(cfg.augment))  # views are drawn per batch, on the device
    sample = dataset[0]
    sample_shape = list(sample.shape)
    _probe_encoder(encoder, encoder_name, sample, domain.name)
    cases = hold_in_memory(dataset)  # decoded once, when it fits in memory
    pairs = PairDataset(cases, rows["patient_id"], None, method_cls.pairing, **method.pair_options)
    order = torch.Generator()  # re-seeded from (seed, epoch) at each epoch start: see EpochSeeds
    loader = DataLoader(
        pairs,
        batch_size=batch_size,
        sampler=RandomSampler(pairs, generator=order),
        generator=torch.Generator().manual_seed(cfg.seed),  # worker seeds; keeps the global RNG for partners and views
        drop_last=True,  # batch-norm and contrastive losses need full batches
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
        pin_memory=torch.cuda.is_available() and cfg.accelerator != "cpu",
    )
    steps_per_epoch = max(1, len(rows) // (batch_size * world))
    module = PretrainModule(
        method,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        augment=augment,
    )

    def encoder_meta() -> dict[str, Any]:
        return {
            "encoder": {"name": encoder_name, "kwargs": encoder_kwargs},
            "num_features": int(encoder.num_features),
            "input_shape": sample_shape,
            "domain": domain.name,
            "method": cfg.method,
            "preprocessing": dataset.preprocessing,
            "config": cfg.model_dump(mode="json"),
            "recipes": recipes,
            "n_cases": len(rows),
            "n_patients": int(rows["patient_id"].nunique()),
        }

    run_files = RunFiles(run_dir, cfg, encoder_meta)
    guards = [EpochSeeds(cfg.seed, order),
              FiniteLoss("pretraining", run_dir / ENCODER_CKPT)]
    loggers = make_logger(cfg.logger, run_dir, resume_step=step if resume else None)
    tidy_lightning_logging()
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        max_time=timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=_strategy(cfg),
        precision=cfg.precision,
        logger=loggers,
        enable_checkpointing=False,  # RunFiles writes last.ckpt and checkpoint.pt
        enable_model_summary=False,
        enable_progress_bar=not is_quiet(),
        callbacks=[run_files, *guards] if is_quiet() else [run_files, *guards, EpochProgressBar()],
        default_root_dir=run_dir,
        log_every_n_steps=1,
    )
    ckpt_path = None
    if resume:
        kept = truncate_metrics(run_dir / METRICS_CSV, step) if trainer.is_global_zero else 0
        log.info("resuming from %s at step %d (%d metrics rows kept)", last, step, kept)
        ckpt_path = last
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        try:
            trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException:
            raise PretrainingStopped(_stopped_message(trainer, data_dir, run_dir)) from None
    if trainer.is_global_zero:
        plot_curves(run_dir, f"pretrain {cfg.method}: {run_dir.resolve().name}")
    return run_dir / ENCODER_CKPT


def _stopped_message(trainer: L.Trainer, data_dir: Path, run_dir: Path) -> str:
    """One line: where the run stopped, the command that resumes it, and where that continues."""
    total = planned_epochs(trainer)
    where = f"epoch {trainer.current_epoch + 1}{f'/{total}' if total else ''} step {trainer.global_step}"
    resume = f"medssl pretrain --data {shlex.quote(str(data_dir))} --out {shlex.quote(str(run_dir))} --resume"
    try:
        saved = torch.load(run_dir / LAST_CKPT, map_location="cpu", weights_only=True, mmap=True)
        saved_step = int(saved["global_step"])
    except Exception:  # no epoch finished yet (or the file is unreadable): nothing to resume
        return f"pretraining stopped by SIGTERM at {where}, before any epoch was saved; start it again without --resume"
    return f"pretraining stopped at {where}; resume with: {resume} (continues from step {saved_step}, the last epoch end)"
