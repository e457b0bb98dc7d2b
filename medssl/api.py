"""The Python API for notebooks: the same steps as the CLI, with the same defaults.

    import medssl

    medssl.ingest("transactions", "cards.csv", "data/cards", label_col="Class")
    ckpt = medssl.pretrain("data/cards", "runs/cards", config="configs/transactions_scarf.yaml")
    scores = medssl.score(ckpt, "data/cards", "scores/cards.parquet")      # a pandas DataFrame
    model = medssl.finetune(ckpt, "data/cards", "runs/cards_ft", labels="labels.csv")
    report = medssl.evaluate(model, "data/cards", "reports/cards.json")
    m = medssl.load_model(model)
    m.predict_proba("data/cards"); m.anomaly_score("data/cards"); m.embed("data/cards")

Every function takes the paths the CLI takes and returns what the CLI writes (paths, a report
dict, a scores DataFrame); options are keyword arguments named like the CLI flags
(``--label-col`` -> ``label_col``). Nothing here holds modelling logic: it calls the same
package functions as ``medssl COMMAND``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from medssl.errors import ConfigError
from medssl.models import Model, load_model

INGEST_KINDS = ("dicom", "images", "ehr", "signals", "transactions")


def _options(cls: type, kwargs: dict[str, Any]) -> Any:
    """``cls(**kwargs)`` with an error that lists the known option names."""
    fields = dataclasses.fields(cls)
    known = [f.name for f in fields]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; known: {', '.join(known)}")
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in kwargs]
    if missing:
        raise ConfigError(f"option(s) {missing} are required here, e.g. format=... (see `medssl ingest KIND --help`)")
    return cls(**kwargs)


def ingest(kind: str, src: str | Path, out: str | Path, **options: Any) -> dict[str, Any]:
    """Ingest ``src`` into the folder ``out`` (``medssl ingest KIND SRC --out OUT``); returns a summary.

    ``kind``: dicom, images, ehr, signals or transactions. ``options`` are the flags of
    ``medssl ingest KIND --help`` in snake case, e.g. ``label_col="Class"``, ``format="npz"``.
    """
    if kind == "transactions":
        from medssl.data.transactions.ingest import IngestOptions, ingest_transactions

        for key in ("categorical", "numeric"):  # "a,b" or ["a", "b"], as --categorical a,b
            value = options.get(key)
            if isinstance(value, str):
                options[key] = tuple(c.strip() for c in value.split(",") if c.strip())
            elif value is not None:
                options[key] = tuple(value)
        return ingest_transactions(src, out, _options(IngestOptions, options))
    if kind == "dicom":
        from medssl.data.imaging.dicom_ingest import ingest_dicom

        unknown = sorted(set(options) - {"pseudonymize_key", "workers", "voi"})
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown}; known: pseudonymize_key, workers, voi")
        return ingest_dicom(src, out, key=options.get("pseudonymize_key"), workers=options.get("workers"),
                            voi=bool(options.get("voi", False)))
    if kind == "images":
        from medssl.data.imaging.ingest import ImageIngestOptions, ingest_images

        return ingest_images(src, out, _options(ImageIngestOptions, options))
    if kind == "ehr":
        from medssl.data.ehr.ingest import EhrIngestOptions, ingest_ehr

        return ingest_ehr(src, out, _options(EhrIngestOptions, options))
    if kind == "signals":
        from medssl.data.signals.ingest import SignalIngestOptions, ingest_signals

        return ingest_signals(src, out, _options(SignalIngestOptions, options))
    raise ConfigError(f"unknown ingest kind {kind!r}; use one of {', '.join(INGEST_KINDS)}")


def pretrain(data_dir: str | Path, out_dir: str | Path, config: str | Path | dict[str, Any] | None = None,
             resume: bool = False, **overrides: Any) -> Path:
    """Pretrain without labels (``medssl pretrain``); returns ``out_dir/checkpoint.pt``.

    ``config``: a YAML preset path (``configs/*.yaml``) or a dict; ``overrides`` are config keys
    (``epochs=5``, ``method="byol"``) applied on top, as the CLI flags are.
    """
    from medssl.config import load_config
    from medssl.train.pretrain import pretrain as _pretrain
    from medssl.train.pretrain_config import PretrainConfig

    if isinstance(config, dict):
        cfg = load_config(PretrainConfig, None, **{**config, **overrides})
    else:
        cfg = load_config(PretrainConfig, str(config) if config is not None else None, **overrides)
    return _pretrain(data_dir, out_dir, cfg, resume=resume)


def finetune(checkpoint: str | Path, data_dir: str | Path, out_dir: str | Path, labels: str | Path | None = None,
             config: str | Path | None = None, overwrite: bool = False, **overrides: Any) -> Path:
    """Fine-tune with few labels (``medssl finetune``); returns ``out_dir/model.pt``.

    ``labels``: a CSV with ``case_id,label`` or ``patient_id,label`` (default: the manifest's
    labels); ``overrides``: fine-tune settings such as ``shots=10``, ``label_fraction=0.01``,
    ``mode="linear"``, ``seed=1`` (``medssl finetune --help`` lists them). An ``out_dir`` holding
    an earlier fine-tune is refused unless ``overwrite=True``.
    """
    from medssl.config import load_config
    from medssl.train.finetune import FinetuneConfig, finetune as _finetune

    cfg = load_config(FinetuneConfig, str(config) if config is not None else None, **overrides)
    return _finetune(checkpoint, data_dir, out_dir, cfg, labels_csv=labels, overwrite=overwrite)


def evaluate(model: str | Path, data_dir: str | Path, out: str | Path, labels: str | Path | None = None,
             split: str | None = None) -> dict[str, Any]:
    """Evaluate a fine-tuned model (``medssl evaluate``): writes ``out`` (JSON) and plots; returns the report."""
    from medssl.eval.evaluate import evaluate as _evaluate

    return _evaluate(model, data_dir, out, labels_csv=labels, split=split)


def score(model: str | Path, data_dir: str | Path, out: str | Path, **options: Any) -> pd.DataFrame:
    """Score every case (``medssl score``): writes ``out`` (Parquet) and returns it as a DataFrame.

    ``options``: ``flag_top``, ``flag_percentile``, ``embeddings_out``, ``resume``, ``engine``,
    ``chunk_size``, ``batch_size``, ``reference_split``, ``device``, ... (``medssl score --help``).
    """
    from medssl.scoring.job import score as _score

    summary = _score(model, data_dir, out, **options)
    return pd.read_parquet(summary.out)


__all__ = ["INGEST_KINDS", "Model", "evaluate", "finetune", "ingest", "load_model", "pretrain", "score"]


def list_methods() -> list[dict[str, str]]:
    """Every pretraining method as a dict: name, family, domains ("any" or a comma list), summary
    (what the encoder learns) and lightly_parts; the rows ``medssl methods`` prints."""
    from medssl.methods.base import method_info

    return method_info()
