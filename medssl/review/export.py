"""Review decisions out of the store.

- :func:`decisions_to_labels` / :func:`export_labels`: the labels CSV (``case_id,label``) that
  ``medssl finetune --labels`` reads: one row per case whose standing decision carries a label.
- :func:`decisions_table` / :func:`export_decisions`: every decision ever recorded, with who, when,
  which model and note, and whether it still stands (for audits and analysis; CSV or Parquet).
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, select

from medssl.review.errors import ReviewError
from medssl.review.events import DECISIONS, case_states
from medssl.review.models import Case, ReviewEvent

DECISION_COLUMNS: tuple[str, ...] = (
    "case_id", "patient_id", "domain", "decision", "label", "reviewer", "time", "model_id", "note",
    "outcome", "undone_by", "undone_at",
)
OUTCOMES: tuple[str, ...] = ("standing", "overridden", "undone")
EXPORT_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")


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


def _iso(value: object) -> str | None:
    return None if value is None else f"{value:%Y-%m-%dT%H:%M:%S.%f}Z"  # stored naive, in UTC


def decisions_table(engine: Engine) -> pd.DataFrame:
    """Every decision event (confirm / dismiss / assign_class), oldest first: ``DECISION_COLUMNS``.

    ``time`` and ``undone_at`` are UTC ISO-8601 strings (``...Z``). ``outcome``: ``standing`` (the
    case's current decision), ``undone`` (an undo event removed it: ``undone_by``/``undone_at`` say
    who and when) or ``overridden`` (a later decision stands over it). Every column is text (object
    dtype holding ``None`` where empty), so CSV and Parquet carry the same values.
    """
    query = (select(ReviewEvent.id, ReviewEvent.case_id, Case.patient_id, Case.domain, ReviewEvent.action,
                    ReviewEvent.label, ReviewEvent.reviewer, ReviewEvent.created_at, ReviewEvent.model_id,
                    ReviewEvent.note, ReviewEvent.ref_event_id)
             .join(Case, Case.case_id == ReviewEvent.case_id)
             .where(ReviewEvent.action.in_((*DECISIONS, "undo"))).order_by(ReviewEvent.id))
    with engine.connect() as conn:
        events = conn.execute(query).all()
    undone = {e.ref_event_id: e for e in events if e.action == "undo"}
    standing = {s.decision_event_id for s in case_states(engine).values()}
    rows = []
    for e in events:
        if e.action == "undo":
            continue
        undo = undone.get(e.id)
        outcome = "standing" if e.id in standing else "undone" if undo is not None else "overridden"
        rows.append([e.case_id, e.patient_id, e.domain, e.action, e.label, e.reviewer, _iso(e.created_at),
                     e.model_id, e.note, outcome, undo.reviewer if undo is not None else None,
                     _iso(undo.created_at) if undo is not None else None])
    return pd.DataFrame(rows, columns=list(DECISION_COLUMNS), dtype=object)


def export_decisions(engine: Engine, path: str | Path) -> int:
    """Write :func:`decisions_table` to ``path``: CSV for ``.csv``, Parquet for ``.parquet``;
    returns the number of decisions. ``ReviewError`` for another suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ReviewError(f"{path}: the export is written as CSV or Parquet; end the file name in .csv or .parquet")
    df = decisions_table(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        path.write_bytes(decisions_parquet(df))
    return len(df)


def decisions_parquet(df: pd.DataFrame) -> bytes:
    """:func:`decisions_table`'s frame as Parquet bytes; every column a string column, also when
    all empty (pyarrow would guess a null type)."""
    schema = pa.schema([(c, pa.string()) for c in DECISION_COLUMNS])
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), sink)
    return sink.getvalue()
