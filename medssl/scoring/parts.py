"""Part files of a scoring run and their atomic commit into SCORES_PARQUET.

Layout beside ``OUT`` (e.g. ``scores.parquet``)::

    scores.parquet.parts/job.json               what the parts were computed from (resume guard)
    scores.parquet.parts/scorer.pt              scorer fitted at scoring time (if the model had none)
    scores.parquet.parts/part-00000.parquet     one per chunk; written to a temp name, then renamed
    scores.parquet.parts/part-00000.errors.csv  cases of that chunk that failed to decode (if any)
    scores.parquet.parts/explain-00000.parquet  "why flagged" of that chunk's flagged cases (after all parts)

A part file exists only once its chunk is complete (the rename is the commit of the chunk), so
after a kill ``--resume`` recomputes exactly the chunks without a part: no duplicates, no gaps.
``commit`` streams the parts (one at a time: bounded memory) into ``OUT`` via a temp file +
``os.replace``, computes ``flagged`` across all parts, and removes the parts folder.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medssl.atomic import atomic_write
from medssl.errors import DataError

SCORE_COLUMNS = (
    "case_id", "patient_id", "domain", "anomaly_score", "anomaly_percentile", "flagged",
    "predicted_label", "predicted_proba", "model_id", "scored_at", "explanation",
)
ERROR_COLUMNS = ("case_id", "path", "reason")
JOB_FILE = "job.json"
PART_SCHEMA = pa.schema([
    ("row", pa.int64()), ("case_id", pa.string()), ("patient_id", pa.string()), ("domain", pa.string()),
    ("anomaly_score", pa.float64()), ("anomaly_percentile", pa.float64()), ("predicted_label", pa.string()),
    ("predicted_proba", pa.float64()), ("scored_at", pa.timestamp("us", tz="UTC")),
])


DATA_DIR_METADATA_KEY = b"medssl.data_dir"  # score-file metadata: the DATA_DIR the cases come from


@dataclass(frozen=True)
class FlagRule:
    """How ``flagged`` is set: the ``top_k`` highest anomaly scores, or ``percentile >= percentile``."""

    top_k: int | None = None
    percentile: float | None = None

    def describe(self) -> str:
        return f"top {self.top_k} anomaly scores" if self.top_k is not None else f"anomaly_percentile >= {self.percentile:g}"


def parts_dir_for(out: Path) -> Path:
    """``OUT.parts`` beside the output file."""
    return out.with_name(out.name + ".parts")


def errors_path_for(out: Path) -> Path:
    """``scores.parquet`` -> ``scores.errors.csv`` beside it."""
    return out.with_suffix(".errors.csv")


def part_path(parts: Path, chunk: int) -> Path:
    return parts / f"part-{chunk:05d}.parquet"


EXPLAIN_SCHEMA = pa.schema([("row", pa.int64()), ("explanation", pa.string())])


def explain_path(parts: Path, chunk: int) -> Path:
    """The "why flagged" texts of a chunk (``medssl.scoring.explain``): ``row, explanation``."""
    return parts / f"explain-{chunk:05d}.parquet"


def read_explanations(parts: Path, chunk: int) -> dict[int, str]:
    """``{row: explanation}`` of one chunk (empty when none was written)."""
    path = explain_path(parts, chunk)
    if not path.is_file():
        return {}
    t = pq.read_table(path)
    return dict(zip(t.column("row").to_pylist(), t.column("explanation").to_pylist()))


def clear_parts(parts: Path) -> None:
    """Remove a parts folder and only the files this module writes into it."""
    if not parts.is_dir():
        return
    for p in parts.iterdir():
        if (p.name == JOB_FILE or p.name == "scorer.pt" or p.name.startswith(("part-", ".part-", "explain-"))
                or (p.name.startswith(".") and p.name.endswith(".tmp"))):
            p.unlink()
    try:
        parts.rmdir()
    except OSError:
        pass  # someone else's file is in there: leave the folder


def clear_commit_temps(*outputs: Path | None) -> int:
    """Remove temporary files a killed commit left beside ``outputs`` (``.NAME.<random>.tmp``, see
    ``medssl.atomic``); returns how many were removed."""
    removed = 0
    for out in outputs:
        if out is None or not out.parent.is_dir():
            continue
        for tmp in out.parent.glob(f".{out.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def open_parts(parts: Path, fingerprint: dict[str, Any], resume: bool) -> list[int]:
    """Prepare ``parts`` for a run with ``fingerprint``; returns the chunks already done.

    With ``resume`` an existing folder must come from the same model, manifest and chunking, else
    ``DataError``. Without it, leftovers of an earlier run are cleared (a fresh, idempotent run).
    """
    job = parts / JOB_FILE
    if parts.is_dir() and resume and job.is_file():
        before = json.loads(job.read_text())
        diff = [k for k in sorted(set(before) | set(fingerprint)) if before.get(k) != fingerprint.get(k)]
        if diff:
            raise DataError(
                f"cannot resume: {parts} was written with a different {', '.join(diff)} "
                f"({', '.join(f'{k}={before.get(k)!r}' for k in diff)}; now "
                f"{', '.join(f'{k}={fingerprint.get(k)!r}' for k in diff)}). Run without --resume to start over"
            )
        for p in parts.glob(".part-*"):
            p.unlink()  # temp files of a part that was being written when the run was killed
        return sorted(int(p.name[5:10]) for p in parts.glob("part-*.parquet"))
    clear_parts(parts)
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write(job, lambda tmp: Path(tmp).write_text(json.dumps(fingerprint, indent=1, sort_keys=True)))
    return []


def write_part(parts: Path, chunk: int, frame: pd.DataFrame, embeddings: np.ndarray, errors: pd.DataFrame) -> Path:
    """Write one chunk: its errors (if any) first, then the part file (atomic rename = chunk done).

    ``frame`` holds ``row`` and the score columns except ``flagged``/``model_id``; ``embeddings``
    is ``(len(frame), D)`` float32.
    """
    err_path = parts / f"part-{chunk:05d}.errors.csv"
    if len(errors):
        atomic_write(err_path, lambda tmp: errors[list(ERROR_COLUMNS)].to_csv(tmp, index=False))
    elif err_path.exists():
        err_path.unlink()
    table = pa.Table.from_pandas(frame[PART_SCHEMA.names], schema=PART_SCHEMA, preserve_index=False)
    dim = embeddings.shape[1]
    flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1), type=pa.float32())
    table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(flat, dim))
    path = part_path(parts, chunk)
    # no dictionary encoding for the embedding floats: it cannot shrink them and costs ~10x the write
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, use_dictionary=PART_SCHEMA.names))
    return path


def part_flags(parts_files: list[Path], rule: FlagRule) -> list[np.ndarray]:
    """``flagged`` per part, computed across all parts (top-K needs every score)."""
    col = "anomaly_score" if rule.top_k is not None else "anomaly_percentile"
    values = [pq.read_table(p, columns=[col]).column(0).to_numpy(zero_copy_only=False) for p in parts_files]
    if rule.top_k is None:
        return [v >= float(rule.percentile) for v in values]
    allv = np.concatenate(values) if values else np.zeros(0)
    flagged = np.zeros(len(allv), dtype=bool)
    order = np.argsort(-allv, kind="stable")  # ties: earlier manifest row first
    flagged[order[: rule.top_k]] = True
    return np.split(flagged, np.cumsum([len(v) for v in values])[:-1])


def commit(
    parts: Path, n_chunks: int, out: Path, model_id: str, rule: FlagRule, embeddings_out: Path | None,
    extra_errors: pd.DataFrame, data_dir: Path | None = None,
) -> tuple[int, int, int]:
    """Stream the parts into ``out`` (+ embeddings, + errors file) atomically.

    ``data_dir`` (the scored DATA_DIR) is recorded in the score file's Parquet metadata under
    ``DATA_DIR_METADATA_KEY``, so the review app finds each case's data wherever the file is moved.
    Returns ``(n_scored, n_flagged, n_errors)``. Removes ``parts`` afterwards.
    """
    files = [part_path(parts, c) for c in range(n_chunks)]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise DataError(f"cannot commit {out}: parts {missing[:3]} are missing; re-run with --resume")
    errors = [extra_errors[list(ERROR_COLUMNS)]] if len(extra_errors) else []
    errors += [pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(parts.glob("part-*.errors.csv"))]
    all_errors = pd.concat(errors, ignore_index=True) if errors else pd.DataFrame(columns=list(ERROR_COLUMNS))
    if sum(pq.ParquetFile(p).metadata.num_rows for p in files) == 0:  # nothing usable: keep any earlier out
        atomic_write(errors_path_for(out), lambda tmp: all_errors.to_csv(tmp, index=False))
        clear_parts(parts)
        first = f" (first: {all_errors['reason'].iloc[0]})" if len(all_errors) else ""
        raise DataError(
            f"no case could be scored: all {len(all_errors)} inputs failed{first}; every reason is in "
            f"{errors_path_for(out)}. {out} was not written"
        )
    flags = part_flags(files, rule)
    n_scored = n_flagged = 0
    writers: dict[str, pq.ParquetWriter] = {}

    def write_all(tmp_scores: str, tmp_emb: str | None) -> None:
        nonlocal n_scored, n_flagged
        try:
            for chunk, (path, flagged) in enumerate(zip(files, flags)):
                t = pq.read_table(path, columns=None if tmp_emb is not None else PART_SCHEMA.names)
                t = t.append_column("flagged", pa.array(flagged, type=pa.bool_()))
                why = read_explanations(parts, chunk)
                t = t.append_column("explanation", pa.array([why.get(r) for r in t.column("row").to_pylist()], pa.string()))
                t = t.append_column("model_id", pa.array([model_id] * t.num_rows, type=pa.string()))
                scores = t.select(list(SCORE_COLUMNS))
                if "scores" not in writers:
                    schema = scores.schema
                    if data_dir is not None:
                        meta = {**(schema.metadata or {}), DATA_DIR_METADATA_KEY: str(Path(data_dir).resolve()).encode()}
                        schema = schema.with_metadata(meta)
                    writers["scores"] = pq.ParquetWriter(tmp_scores, schema)
                writers["scores"].write_table(scores)
                if tmp_emb is not None:
                    emb = t.select(["case_id", "embedding"])
                    if "emb" not in writers:
                        writers["emb"] = pq.ParquetWriter(tmp_emb, emb.schema, use_dictionary=["case_id"])
                    writers["emb"].write_table(emb)
                n_scored += t.num_rows
                n_flagged += int(flagged.sum())
        finally:
            for w in writers.values():
                w.close()

    if embeddings_out is None:
        atomic_write(out, lambda tmp: write_all(tmp, None))
    else:
        atomic_write(embeddings_out, lambda tmp_emb: atomic_write(out, lambda tmp: write_all(tmp, tmp_emb)))
    atomic_write(errors_path_for(out), lambda tmp: all_errors.to_csv(tmp, index=False))
    clear_parts(parts)
    return n_scored, n_flagged, len(all_errors)


def utc_now() -> pd.Timestamp:
    """The current time in UTC (``scored_at`` of a part), microsecond resolution."""
    return pd.Timestamp(dt.datetime.now(dt.UTC)).floor("us")
