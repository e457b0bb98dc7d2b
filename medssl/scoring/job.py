"""The batch scoring job behind ``medssl score``: chunked, resumable, idempotent.

1. Load the model file (refusing foreign or tampered files) and the manifest of DATA_DIR.
2. If the model carries no anomaly-scorer statistics, fit a kNN scorer on the embeddings of the
   ``reference_split`` rows of DATA_DIR (logged; refused when there is no such split).
3. Cut the manifest into chunks of ``chunk_size`` rows; each chunk is scored by an engine (local or
   Ray) and written as a part file (``medssl.scoring.parts``). ``resume`` skips finished chunks.
4. Commit: stream the parts into SCORES_PARQUET atomically, set ``flagged`` over all of them.

Output columns: ``case_id, patient_id, domain, anomaly_score, anomaly_percentile, flagged,
predicted_label, predicted_proba, model_id, scored_at, explanation``; ``predicted_proba`` is the probability of
``predicted_label`` (both null without a head); ``scored_at`` is when the case's chunk was scored
(UTC); ``explanation`` is why a flagged case was flagged (``medssl.scoring.explain``; null for
unflagged cases and with ``explain=False``). Cases that fail to decode go to
``SCORES.errors.csv`` (``case_id, path, reason``) and the job completes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from medssl.checkpoints import file_sha256
from medssl.data import read_manifest
from medssl.data.manifest import MANIFEST_NAME
from medssl.errors import ConfigError, DataError
from medssl.progress import progress
from medssl.scoring.chunk import ChunkResult, anomaly_features_chunk
from medssl.scoring.engine_local import Chunk, run_local
from medssl.models import Model, load_model
from medssl.outputs import refuse_inputs, refuse_replacing
from medssl.scoring.parts import (
    ERROR_COLUMNS,
    FlagRule,
    clear_commit_temps,
    commit,
    errors_path_for,
    open_parts,
    part_flags,
    part_path,
    parts_dir_for,
    utc_now,
    write_part,
)

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ScoreSummary:
    """What a finished job did."""

    out: Path
    n_scored: int
    n_flagged: int
    n_errors: int
    n_chunks: int
    n_chunks_resumed: int
    model_id: str


def _domain_rows(manifest: pd.DataFrame, model: Model) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows of the model's domain, error rows for the others)``."""
    mine = manifest["domain"].astype(str) == model.domain
    if not mine.any():
        found = sorted(manifest["domain"].astype(str).unique())
        raise DataError(
            f"the model scores {model.domain!r} data but DATA_DIR holds only {found}; "
            "pass the DATA_DIR this model's domain was ingested into"
        )
    other = manifest.loc[~mine]
    errors = pd.DataFrame({
        "case_id": other["case_id"].astype(str),
        "path": other["path"].astype(str) if "path" in other.columns else "",
        "reason": [f"case is {d!r} data; the model scores {model.domain!r}" for d in other["domain"]],
    })
    return manifest.loc[mine].reset_index(drop=True), errors


def _fit_reference_scorer(
    model: Model, data_dir: Path, manifest: pd.DataFrame, split: str, chunk_size: int, batch_size: int,
    num_workers: int, cache: Path, scorer_name: str | None = None,
) -> None:
    """Give ``model`` its anomaly recipe's scorer (or the scorer ``scorer_name`` on the recipe's
    features) fitted on the ``split`` rows (cached in ``cache``)."""
    from medssl.anomaly import create_scorer

    if cache.is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)  # written atomically below
        model.set_scorer(str(saved["name"]), {}, saved["state"])
        log.info("reusing the anomaly scorer fitted by the interrupted run")
        return
    if "split" not in manifest.columns or not (manifest["split"].astype(str) == split).any():
        have = sorted(manifest["split"].dropna().astype(str).unique()) if "split" in manifest.columns else []
        raise DataError(
            f"{model.path} carries no anomaly-scorer statistics, so scoring fits one on the {split!r} rows "
            f"of DATA_DIR, but there are none (splits present: {have or 'no split column'}). Pass "
            "--reference-split with a split that exists, or score with a model from `medssl finetune`"
        )
    ref = manifest.loc[manifest["split"].astype(str) == split].reset_index(drop=True)
    feats = []
    starts = range(0, len(ref), chunk_size)
    for start in progress(starts, total=len(starts), desc=f"embedding {split!r} reference rows", unit="chunk"):
        f, _ = anomaly_features_chunk(model, data_dir, ref.iloc[start:start + chunk_size], batch_size, num_workers)
        if len(f):
            feats.append(f)
    n = sum(len(f) for f in feats)
    if n < 2:
        raise DataError(f"only {n} {split!r} row(s) could be decoded; a reference scorer needs at least 2")
    x = np.concatenate(feats)
    recipe = model.anomaly_recipe
    name, kwargs = recipe.scorer_spec(n, int(model.encoder.num_features), x.shape[1], scorer_name)
    scorer = create_scorer(name, **kwargs).fit(x)
    state = dict(scorer.state_dict())
    tmp = cache.with_name(f".part-{cache.name}.tmp")  # ".part-" temp names are swept on resume
    torch.save({"name": name, "state": state}, tmp)
    os.replace(tmp, cache)
    model.set_scorer(name, {}, state)
    log.info("the model carries no anomaly-scorer statistics: fitted its domain's anomaly recipe %r (%s) on "
             "%d %r rows of DATA_DIR", recipe.name, name, n, split)


def _part_frame(rows: pd.DataFrame, first_row: int, res: ChunkResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(scored rows, error rows)`` of one chunk's result; ``rows`` are the chunk's manifest rows."""
    done = rows.iloc[res.ok]
    frame = pd.DataFrame({
        "row": first_row + res.ok.astype(np.int64),
        "case_id": done["case_id"].astype(str).to_numpy(),
        "patient_id": done["patient_id"].astype(str).to_numpy(),
        "domain": done["domain"].astype(str).to_numpy(),
        "anomaly_score": res.anomaly_score,
        "anomaly_percentile": res.anomaly_percentile,
        "predicted_label": pd.array(list(res.predicted_label), dtype=object),
        "predicted_proba": res.predicted_proba,
        "scored_at": utc_now(),
    })
    pos = [p for p, _, _ in res.errors]
    errors = pd.DataFrame({
        "case_id": rows["case_id"].astype(str).to_numpy()[pos] if pos else [],
        "path": [path for _, path, _ in res.errors],
        "reason": [reason for _, _, reason in res.errors],
    }, columns=list(ERROR_COLUMNS))
    return frame, errors


def _check_runtime(runtime: str, model_path: Path, engine: str) -> None:
    """The runtime fits the model file (``.onnx`` for onnx) and the engine (``ConfigError``)."""
    if runtime not in ("torch", "onnx"):
        raise ConfigError(f"unknown runtime {runtime!r}; use torch or onnx")
    is_onnx = model_path.suffix == ".onnx"
    if runtime == "onnx" and not is_onnx:
        raise ConfigError(f"--runtime onnx runs an exported model.onnx, not {model_path.name}; export it first: "
                          f"medssl export onnx --model {model_path} --out {model_path.with_suffix('.onnx')}")
    if runtime == "torch" and is_onnx:
        raise ConfigError(f"{model_path.name} is an ONNX export; score it with --runtime onnx")
    if runtime == "onnx" and engine != "local":
        raise ConfigError("--runtime onnx runs with the local engine only; drop --engine ray")


def _is_score_file(path: Path, columns: tuple[str, ...]) -> bool:
    """True when ``path`` is a Parquet file holding ``columns`` (an earlier score or embeddings file)."""
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
    except (OSError, ValueError, pa.ArrowException):
        return False
    return set(columns) <= names


def _check_outputs(model_path: Path, data_dir: Path, out: Path, emb_out: Path | None, overwrite: bool) -> None:
    """Refuse outputs that are, or would replace, an input (the model, any file of DATA_DIR) or,
    unless ``overwrite``, a file that is not an earlier score / embeddings file (``ConfigError``)."""
    inputs = {"--model": model_path, "--data": data_dir}
    for flag, path in (("--out", out), ("--out", errors_path_for(out)), ("--out", parts_dir_for(out)),
                       ("--embeddings", emb_out)):
        if path is not None:
            refuse_inputs(path, inputs, flag)
    refuse_replacing(out, "--out", lambda p: _is_score_file(p, ("case_id", "anomaly_score", "model_id")),
                     "a medssl score file", overwrite)
    if emb_out is not None:
        refuse_replacing(emb_out, "--embeddings", lambda p: _is_score_file(p, ("case_id", "embedding")),
                         "a medssl embeddings file", overwrite)


def score(
    model_path: str | Path,
    data_dir: str | Path,
    out: str | Path,
    *,
    engine: str = "local",
    ray_address: str | None = None,
    ray_workers: int | None = None,
    flag_top: int | None = None,
    flag_percentile: float | None = None,
    embeddings_out: str | Path | None = None,
    resume: bool = False,
    chunk_size: int = 2048,
    batch_size: int = 256,
    num_workers: int = 0,
    reference_split: str = "train",
    device: str = "auto",
    scorer: str | None = None,
    overwrite: bool = False,
    runtime: str = "torch",
    explain: bool = True,
) -> ScoreSummary:
    """Score every case of DATA_DIR with the model file; write SCORES_PARQUET (see module doc).

    ``out`` (and ``embeddings_out``) may replace an earlier score (embeddings) file, never an
    input, and any other existing file only with ``overwrite``.

    ``scorer``: fit this anomaly scorer (``medssl.anomaly``) on the recipe's features of the
    ``reference_split`` rows instead of using the model's own (or its domain recipe's) scorer.

    ``runtime="onnx"``: ``model_path`` is a ``model.onnx`` from ``medssl export onnx``, run in
    onnxruntime on the CPU (local engine only).

    ``explain``: write an ``explanation`` for every flagged case (occlusion re-scoring: each
    flagged case costs one model call per explanation unit of its domain).
    """
    _check_runtime(runtime, Path(model_path), engine)
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if chunk_size < 1 or batch_size < 1 or num_workers < 0:
        raise ConfigError("--chunk-size and --batch-size must be at least 1, --num-workers at least 0")
    if flag_top is not None and flag_percentile is not None:
        raise ConfigError("give either --flag-top or --flag-percentile, not both")
    if flag_top is not None and flag_top < 0:
        raise ConfigError(f"--flag-top must be 0 or more, got {flag_top}")
    if flag_percentile is not None and not 0 <= flag_percentile <= 100:
        raise ConfigError(f"--flag-percentile must be between 0 and 100, got {flag_percentile}")
    model_path, data_dir, out = Path(model_path).resolve(), Path(data_dir).resolve(), Path(out).resolve()
    emb_out = None if embeddings_out is None else Path(embeddings_out).resolve()
    if emb_out == out:
        raise ConfigError("--embeddings must be a different file from --out")
    _check_outputs(model_path, data_dir, out, emb_out, overwrite)
    clear_commit_temps(out, errors_path_for(out), emb_out)
    if engine == "ray" and ray_address:
        from medssl.scoring.engine_ray import check_reachable

        check_reachable(ray_address)  # before the model and reference are loaded: fail in seconds

    if scorer is not None:
        from medssl.anomaly import SCORERS

        SCORERS.get(scorer)  # an unknown name fails now ("did you mean")
    model = load_model(model_path, device="cpu" if engine == "ray" else device)
    if scorer is not None:
        model.scorer, model.scorer_name = None, None
    manifest, extra_errors = _domain_rows(read_manifest(data_dir), model)
    rule = FlagRule(top_k=flag_top) if flag_top is not None else FlagRule(
        percentile=flag_percentile if flag_percentile is not None else model.default_flag_percentile
    )
    fingerprint = {
        "model_id": model.model_id,
        "manifest_sha256": file_sha256(data_dir / MANIFEST_NAME),
        "n_rows": len(manifest),
        "chunk_size": chunk_size,
        "reference_split": None if model.scorer is not None else reference_split,
        "scorer": scorer,
    }
    parts = parts_dir_for(out)
    if resume and not (parts / "job.json").is_file():
        log.info("--resume: no interrupted run at %s; scoring from the start", parts)
    done = set(open_parts(parts, fingerprint, resume))
    if model.scorer is None:
        _fit_reference_scorer(model, data_dir, manifest, reference_split, chunk_size, batch_size, num_workers,
                              parts / "scorer.pt", scorer)
    chunks: list[Chunk] = [
        (i, start, min(start + chunk_size, len(manifest))) for i, start in enumerate(range(0, len(manifest), chunk_size))
    ]
    todo = [c for c in chunks if c[0] not in done]
    if done:
        log.info("resuming: %d of %d chunks already scored, %d to go", len(done), len(chunks), len(todo))
    log.info("scoring %d cases in %d chunks with the %s engine (model %s)", len(manifest), len(chunks), engine,
             model.model_id)
    if engine == "local":
        results = run_local(model, data_dir, manifest, todo, batch_size, num_workers)
    else:
        from medssl.scoring.engine_ray import run_ray

        spec = None if model.scorer_name is None else (model.scorer_name, model.scorer_kwargs, model.scorer_state())
        results = run_ray(model_path, data_dir, manifest, todo, batch_size, spec, model.head is not None,
                          address=ray_address, workers=ray_workers, device=device)
    first = {c: start for c, start, _ in chunks}
    for c, res in progress(results, total=len(todo), desc="scoring", unit="chunk"):
        start = first[c]
        frame, errors = _part_frame(manifest.iloc[start:start + chunk_size], start, res)
        write_part(parts, c, frame, res.embeddings, errors)
    if explain:
        from medssl.scoring.explain import explain_flagged

        files = [part_path(parts, c) for c, _, _ in chunks]
        explain_flagged(model, data_dir, manifest, files, part_flags(files, rule), reference_split)
    n_scored, n_flagged, n_errors = commit(parts, len(chunks), out, model.model_id, rule, emb_out, extra_errors, data_dir)
    log.info("wrote %s: %d cases scored, %d flagged (%s), %d could not be scored (see %s)", out, n_scored,
             n_flagged, rule.describe(), n_errors, out.with_suffix(".errors.csv").name)
    return ScoreSummary(out, n_scored, n_flagged, n_errors, len(chunks), len(done), model.model_id)
