"""Register -> rescore: score DATA_DIR with a newly registered model and put the result in the queue.

What the Fine-tune page runs after "Register this model for scoring": ``medssl score`` (the same
job, :func:`medssl.scoring.job.score`) writes ``scores.parquet`` and ``embeddings.parquet`` beside
the model file, then :func:`medssl.review.queue.import_scores` upserts every scored case into the
review store, so the queue shows the new model's scores, predictions and ``model_id``. Review
decisions are events of their own and are left exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sqlalchemy import Engine

from medssl.errors import ConfigError
from medssl.review.queue import import_scores

SCORES_NAME = "scores.parquet"
EMBEDDINGS_NAME = "embeddings.parquet"


@dataclass(frozen=True)
class Rescored:
    """What a rescore wrote and imported."""

    scores: Path
    embeddings: Path
    model_id: str
    n_scored: int
    n_flagged: int
    n_errors: int
    n_imported: int


def rescore(engine: Engine, model_path: str | Path, data_dir: str | Path, out_dir: str | Path | None = None,
            say: Callable[[str], None] = lambda _text: None, **score_options) -> Rescored:
    """Score ``data_dir`` with ``model_path`` into ``out_dir`` (default: the model's folder) as
    ``scores.parquet`` + ``embeddings.parquet`` (replacing an earlier rescore's files there), then
    import the scores into the review store. ``say`` receives one line per step (the page's
    progress). ``score_options`` go to :func:`medssl.scoring.job.score` (e.g. ``flag_top``).

    Raises ``ConfigError`` for a missing DATA_DIR, and whatever the scoring job or the import raise
    (``CheckpointError``, ``DataError``, ``ReviewError``), each saying how to fix it.
    """
    from medssl.scoring.job import score

    model_path, data_dir = Path(model_path), Path(data_dir)
    if not (data_dir / "manifest.parquet").is_file():
        raise ConfigError(f"DATA_DIR {data_dir} holds no manifest.parquet; give the folder `medssl ingest --out` wrote")
    out = Path(out_dir) if out_dir is not None else model_path.parent
    scores, embeddings = out / SCORES_NAME, out / EMBEDDINGS_NAME
    say(f"Scoring every case of {data_dir} with {model_path.name} ...")
    summary = score(model_path, data_dir, scores, embeddings_out=embeddings, **score_options)
    say(f"Scored {summary.n_scored} cases ({summary.n_flagged} flagged); importing them into the review store ...")
    n = import_scores(engine, scores, data_dir)
    say(f"Imported {n} cases: the queue now shows model {summary.model_id[:12]}.")
    return Rescored(scores, embeddings, summary.model_id, summary.n_scored, summary.n_flagged, summary.n_errors, n)
