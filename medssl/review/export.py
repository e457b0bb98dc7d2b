"""Review decisions -> a labels CSV (``case_id,label``) that ``medssl finetune --labels`` reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from medssl.review.events import case_states


def decisions_to_labels(engine: Engine) -> pd.DataFrame:
    """One row per case whose standing decision carries a label: columns ``case_id, label``.

    Undone decisions and dismissals without a class are left out. Sorted by case_id.
    """
    rows = [(s.case_id, s.label) for s in case_states(engine).values() if s.label]
    df = pd.DataFrame(rows, columns=["case_id", "label"])
    return df.sort_values("case_id", ignore_index=True)


def export_labels(engine: Engine, path: str | Path) -> int:
    """Write the labels CSV to ``path``; returns the number of labelled cases."""
    df = decisions_to_labels(engine)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return len(df)
