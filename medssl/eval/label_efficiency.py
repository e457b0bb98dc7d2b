"""Label-efficiency curves: AUROC vs label fraction for SSL (linear / kNN / full) and from scratch.

For every fraction x seed one labelled subset is drawn (patient level, exact size) and used by
every method, so the methods differ only in their starting point:

- ``ssl_linear`` / ``ssl_knn``: frozen pretrained encoder + logistic regression / kNN;
- ``ssl_full``: pretrained encoder fine-tuned end to end (LP-FT, smaller encoder learning rate);
- ``ssl_label_spreading`` (mode ``spread``, semi-supervised): the labels are spread over the
  frozen embeddings' kNN graph to the train-split cases outside the subset (their labels unused),
  then the linear probe is fitted on all of them (``FinetuneConfig.unlabelled = "spread"``);
- ``ssl_fixmatch`` (mode ``fixmatch``, semi-supervised): full fine-tuning plus FixMatch-style
  consistency on those unlabelled train cases (confident predictions as targets of augmented views);
- ``ssl_distill`` (mode ``distill``, semi-supervised): the linear probe as teacher, distilled into
  an end-to-end trained student on augmented views of every train case (SimCLRv2);
- ``supervised``: the same encoder architecture, randomly initialised, trained end to end on the
  same labelled cases (one learning rate for everything); with ``supervised_unlabelled`` also
  ``supervised_fixmatch`` / ``supervised_distill``: the same from-scratch network given the same
  semi-supervised method (the fair baseline for the semi-supervised curves).

Everything is measured on the evaluation rows (``split == "test"`` if present, else ``"val"``),
which are never used for training or early stopping: when the evaluation rows are the val split,
early stopping holds out patients of the labelled subset instead.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from medssl.config import SEED_MAX
from medssl.domains import default_label_unit
from medssl.errors import ConfigError, LabelError
from medssl.eval.evaluate import choose_split
from medssl.metrics import point_metrics
from medssl.atomic import write_json
from medssl.outputs import refuse_inputs
from medssl.models import build_encoder, embed, resolve_device
from medssl.train.classifier import fit_classifier, proba_from_embeddings
from medssl.train.finetune_config import FinetuneConfig, trains_encoder
from medssl.train.finetune_data import load_data
from medssl.train.labels import draw_labelled_subset

log = logging.getLogger(__name__)

MODES = {"linear": "ssl_linear", "knn": "ssl_knn", "full": "ssl_full", "spread": "ssl_label_spreading",
         "fixmatch": "ssl_fixmatch", "distill": "ssl_distill"}
_MODE_SETTINGS = {  # FinetuneConfig fields per curve mode
    "linear": {"mode": "linear", "unlabelled": "ignore"},
    "knn": {"mode": "knn", "unlabelled": "ignore"},
    "full": {"mode": "full", "unlabelled": "ignore"},
    "spread": {"mode": "linear", "unlabelled": "spread"},
    "fixmatch": {"mode": "full", "unlabelled": "fixmatch"},
    "distill": {"mode": "linear", "unlabelled": "distill"},
}
SUPERVISED_UNLABELLED = ("fixmatch", "distill")  # semi-supervised methods the from-scratch baseline may also get
DEFAULT_FRACTIONS = (0.01, 0.05, 0.1, 0.25, 1.0)


def _eval_rows(data: Any, split: str | None, classes: list[str]) -> tuple[str, np.ndarray, np.ndarray]:
    chosen = choose_split(data.split, split)
    if chosen == "train":
        raise ConfigError("label-efficiency curves cannot be measured on the train split the labels come from")
    in_split = np.ones(len(data.labels), bool) if chosen == "all" else data.split == chosen
    rows = np.flatnonzero(in_split & np.array([lab in classes for lab in data.labels]))
    if len(rows) == 0:
        raise LabelError(f"no labelled cases in the {chosen!r} split to measure the curves on")
    lookup = {c: i for i, c in enumerate(classes)}
    return chosen, rows, np.array([lookup[data.labels[i]] for i in rows], dtype=np.int64)


def run_label_efficiency(
    checkpoint: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    modes: Sequence[str] = ("linear", "full"),
    supervised: bool = True,
    supervised_epochs: int | None = None,
    labels_csv: str | Path | None = None,
    split: str | None = None,
    base_config: FinetuneConfig | None = None,
    seeds_for_fraction: dict[float, Sequence[int]] | None = None,
    supervised_unlabelled: Sequence[str] = (),
) -> pd.DataFrame:
    """Run the curve and write DIR/label_efficiency.{csv,json,png}; returns one row per run.

    ``seeds_for_fraction`` may give a fraction its own seeds (e.g. more seeds at 1%).
    ``supervised_unlabelled``: semi-supervised methods (``fixmatch``, ``distill``) also given to the
    from-scratch baseline, each as its own curve ``supervised_<method>``.
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConfigError(f"unknown mode(s) {unknown}; choose from {sorted(MODES)}")
    if not modes:
        raise ConfigError(f"--modes needs at least one of {sorted(MODES)} (comma-separated), e.g. linear,full")
    bad_seeds = [s for seeds_ in [seeds, *(seeds_for_fraction or {}).values()] for s in seeds_ if not 0 <= s <= SEED_MAX]
    if bad_seeds:
        raise ConfigError(f"--seeds must be whole numbers from 0 to {SEED_MAX}, got {bad_seeds[0]}")
    bad_sup = [m for m in supervised_unlabelled if m not in SUPERVISED_UNLABELLED]
    if bad_sup:
        raise ConfigError(f"unknown semi-supervised method(s) {bad_sup} for the supervised baseline; "
                          f"choose from {list(SUPERVISED_UNLABELLED)}")
    if supervised_epochs is not None and supervised_epochs < 1:
        raise ConfigError(f"--supervised-epochs must be at least 1, got {supervised_epochs}")
    base = base_config or FinetuneConfig()
    out = refuse_inputs(out_dir, {"--checkpoint": checkpoint, "--data": data_dir, "--labels": labels_csv})
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(checkpoint, data_dir, labels_csv)
    pool = data.train_pool()
    all_classes = sorted({lab for lab in data.labels[pool] if lab is not None})
    chosen, eval_rows, y_eval = _eval_rows(data, split, all_classes)
    holdout = np.zeros(0, dtype=np.int64) if chosen in ("val", "all") else None  # never tune on eval rows
    device = resolve_device(base.device)
    frozen = None
    if any(m in ("linear", "knn", "spread") for m in modes):
        encoder = build_encoder(data.checkpoint.meta, data.checkpoint.states["encoder"]).to(device)
        frozen = embed(encoder, data.dataset, device=device, desc="embedding every case (frozen encoder)")
    domain = str(data.checkpoint.meta.get("domain"))
    label_unit = default_label_unit(domain) if base.label_unit == "auto" else base.label_unit
    log.info("label efficiency on %d %s cases; fractions %s; labels drawn per %s", len(eval_rows), chosen,
             list(fractions), label_unit)
    records: list[dict[str, Any]] = []
    for fraction in fractions:
        for seed in (seeds_for_fraction or {}).get(fraction, seeds):
            subset = draw_labelled_subset(data.patient_ids, data.labels, pool=pool, fraction=fraction, seed=seed,
                                          unit=label_unit)
            runs = [(MODES[m], base.model_copy(update={**_MODE_SETTINGS[m], "seed": seed, "scorer": None})) for m in modes]
            if supervised:
                epochs = supervised_epochs or base.epochs
                for unl in ("ignore", *supervised_unlabelled):
                    runs.append(("supervised" if unl == "ignore" else f"supervised_{unl}", base.model_copy(update={
                        "mode": "full", "unlabelled": unl, "init": "random", "seed": seed, "scorer": None,
                        "epochs": epochs})))
            for method, cfg in runs:
                start = time.perf_counter()
                result = fit_classifier(data, subset, holdout, cfg, frozen_embeddings=frozen)
                if frozen is not None and not trains_encoder(cfg):
                    emb = frozen[eval_rows]
                else:
                    emb = embed(result.encoder, data.dataset, eval_rows, desc="embedding evaluation cases")
                if result.classes != all_classes:
                    raise LabelError(f"the subset at fraction {fraction} lacks a class: {result.classes}")
                metrics = point_metrics(y_eval, proba_from_embeddings(result.head, result.knn, emb, len(result.classes)))
                records.append({
                    "method": method, "fraction": fraction, "seed": seed, "n_labelled": int(len(subset)),
                    **metrics, "epochs_run": result.train_log.get("epochs_run"),
                    "seconds": round(time.perf_counter() - start, 1),
                })
                log.info("%s fraction=%g seed=%d n=%d AUROC %.4f", method, fraction, seed, len(subset), metrics["auroc"] or float("nan"))
    table = pd.DataFrame.from_records(records)
    write_outputs(table, out, {"checkpoint": str(checkpoint), "data": str(data_dir), "eval_split": chosen,
                               "n_eval": int(len(eval_rows)), "config": base.model_dump(mode="json")})
    return table


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of AUROC/AUPRC/balanced accuracy per method and fraction (std 0 for one seed)."""
    grouped = table.groupby(["method", "fraction"], sort=True)
    summary = grouped.agg(
        n_labelled=("n_labelled", "mean"), runs=("seed", "count"),
        auroc_mean=("auroc", "mean"), auroc_std=("auroc", "std"),
        auprc_mean=("auprc", "mean"), balanced_accuracy_mean=("balanced_accuracy", "mean"),
    ).reset_index()
    return summary.fillna({"auroc_std": 0.0})


def plot_curves(summary: pd.DataFrame, path: Path) -> None:
    """AUROC mean +- std vs label fraction (log x), one line per method.

    Drawn on a ``matplotlib.figure.Figure`` outside pyplot (as ``medssl.eval.report`` does): saving
    renders with Agg, and no global backend is switched (a notebook keeps its inline plots)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for method, part in summary.groupby("method"):
        ax.errorbar(part["fraction"] * 100, part["auroc_mean"], yerr=part["auroc_std"], marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("labelled train cases (%)")
    ax.set_ylabel("AUROC (mean +- std over seeds)")
    ax.set_title("Label efficiency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_outputs(table: pd.DataFrame, out: Path, context: dict[str, Any]) -> dict[str, Any]:
    """label_efficiency.csv (every run), .json (runs + summary + context) and .png."""
    table.to_csv(out / "label_efficiency.csv", index=False)
    summary = summarize(table)
    payload = {**context, "runs": table.to_dict(orient="records"), "summary": summary.to_dict(orient="records")}
    payload = _clean(payload)
    write_json(payload, out / "label_efficiency.json")
    plot_curves(summary, out / "label_efficiency.png")
    return payload


def _clean(obj: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
