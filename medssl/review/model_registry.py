"""Models registered for scoring: the fine-tuned ``model.pt`` files the next ``medssl score`` uses.

Registration is history too: the newest row is the current model, older rows stay.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select

from medssl.checkpoints import file_sha256, load_checkpoint
from medssl.review.models import RegisteredModel, utcnow


def register_model(engine: Engine, path: str | Path, reviewer: str) -> str:
    """Register the fine-tuned model file at ``path`` (checked: kind "model", digest intact);
    returns its ``model_id``. Raises ``CheckpointError`` for anything else."""
    path = Path(path).resolve()
    load_checkpoint(path, expect_kind="model")
    model_id = file_sha256(path)
    with engine.begin() as conn:
        conn.execute(RegisteredModel.__table__.insert().values(
            model_id=model_id, path=str(path), registered_by=reviewer, created_at=utcnow()))
    return model_id


def registered_models(engine: Engine) -> pd.DataFrame:
    """Registered models, newest first: model_id, path, registered_by, created_at."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(RegisteredModel.model_id, RegisteredModel.path, RegisteredModel.registered_by,
                   RegisteredModel.created_at).order_by(RegisteredModel.id.desc())
        ).all()
    return pd.DataFrame(rows, columns=["model_id", "path", "registered_by", "created_at"])
