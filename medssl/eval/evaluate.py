"""``evaluate(model, data_dir, out)``: a fine-tuned model on labelled cases -> REPORT_JSON + plots.

Rows evaluated: ``split == "test"`` when the manifest has test rows, else ``"val"``, else every
row; ``split=`` overrides. Only rows with a label of one of the model's classes count; the report
says which split was used and how many rows were left out.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medssl.data import get_domain, read_manifest
from medssl.errors import CheckpointError, DataError, LabelError
from medssl.eval.report import build_report, write_json, write_plots
from medssl.outputs import refuse_inputs, refuse_replacing
from medssl.train.labels import load_labels
from medssl.models import load_model

log = logging.getLogger(__name__)


def _is_report(path: Path) -> bool:
    """True when ``path`` is a report ``medssl evaluate`` wrote (JSON with ``n`` and ``metrics``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "metrics" in data and "n" in data


def choose_split(split_col: np.ndarray | None, requested: str | None) -> str:
    """The split to evaluate: ``requested``, else "test" if present, else "val", else "all"."""
    present = set() if split_col is None else set(split_col.tolist())
    if requested is not None:
        if requested != "all" and requested not in present:
            raise DataError(
                f"the manifest has no rows with split {requested!r} (splits present: {sorted(present) or 'none'}); "
                "pick one of those or --split all"
            )
        return requested
    for name in ("test", "val"):
        if name in present:
            return name
    return "all"


def evaluate(
    model_path: str | Path,
    data_dir: str | Path,
    out_json: str | Path,
    labels_csv: str | Path | None = None,
    split: str | None = None,
    n_boot: int = 1000,
    device: str = "auto",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model_path`` on the labelled rows of ``data_dir``; writes the report and plots.

    ``out_json`` and its plots never replace an input (the model, DATA_DIR's files, the labels)
    nor, unless ``overwrite``, an existing file other than an earlier report.
    """
    inputs = {"--model": model_path, "--data": data_dir, "--labels": labels_csv}
    out_stem = Path(out_json).with_suffix("")
    for path in (Path(out_json), *(Path(f"{out_stem}.{kind}.png") for kind in ("roc", "pr", "confusion"))):
        refuse_inputs(path, inputs)
    refuse_replacing(out_json, "--out", _is_report, "a medssl evaluate report", overwrite)
    model = load_model(model_path, device=device, expect_kind="model")
    if model.head is None:
        raise CheckpointError(f"{model_path} has no classification head; re-run `medssl finetune`")
    manifest = read_manifest(data_dir)
    labels = load_labels(manifest, labels_csv).to_numpy(dtype=object)
    split_col = manifest["split"].astype(str).to_numpy() if "split" in manifest.columns else None
    chosen = choose_split(split_col, split)
    in_split = np.ones(len(manifest), bool) if chosen == "all" else split_col == chosen
    known = np.array([lab in model.classes for lab in labels])
    unknown = in_split & np.array([lab is not None for lab in labels]) & ~known
    rows = np.flatnonzero(in_split & known)
    if unknown.any():
        log.warning("%d case(s) carry labels the model was not trained on and are left out", int(unknown.sum()))
    if len(rows) == 0:
        raise LabelError(
            f"no cases of split {chosen!r} carry a label among the model's classes {model.classes}; "
            "pass --labels CSV or choose another --split"
        )
    log.info("evaluating on %d labelled cases of split %r", len(rows), chosen)
    context: dict[str, Any] = {}
    if chosen == "val" and model.mode == "full" and model.meta.get("validation") == "val":
        context["caution"] = (
            "the val split also chose the early-stopping epoch of this model: these numbers are optimistic; "
            "evaluate on a test split for an unbiased estimate"
        )
        log.warning(context["caution"])
    sub = manifest.iloc[rows].reset_index(drop=True)
    dataset = get_domain(model.domain).make_dataset(Path(data_dir), sub, model.preprocessing)
    proba = model.predict_proba(dataset)
    lookup = {c: i for i, c in enumerate(model.classes)}
    y = np.array([lookup[labels[i]] for i in rows], dtype=np.int64)
    out = Path(out_json)
    plots = write_plots(y, proba, model.classes, out.parent, stem=out.stem)
    report = build_report(
        y, proba, model.classes, sub["patient_id"].tolist(), n_boot=n_boot,
        split=chosen, model_id=model.model_id, mode=model.mode,
        n_left_out_unknown_label=int(unknown.sum()), plots=plots, **context,
    )
    write_json(report, out)
    log.info("AUROC %s (95%% CI %s) on %d cases; report %s", report["metrics"]["auroc"], report["ci95"]["auroc"], report["n"], out)
    return report
