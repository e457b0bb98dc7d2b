"""The next case to review after one: "save and next" on the case page."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine

from medssl.review.queue import list_queue


def next_open_case(engine: Engine, after_case_id: str, domain: str | None = None,
                   reviewer: str | None = None) -> str | None:
    """The first open, unclaimed flagged case after ``after_case_id`` in queue order
    (:func:`medssl.review.queue.list_queue`, ``domain`` as its filter), wrapping around to the top;
    ``None`` when there is none. A case claimed by ``reviewer`` counts as unclaimed (their own).
    ``after_case_id`` itself is never returned; it need not be in the queue (then: from the top).
    """
    rows = list_queue(engine, domain=domain, page_size=10**9).rows
    ids = rows["case_id"].tolist()
    start = ids.index(after_case_id) + 1 if after_case_id in ids else 0
    order = list(range(start, len(ids))) + list(range(0, start))
    for i in order:
        row = rows.iloc[i]
        holder = row["claimed_by"]
        free = pd.isna(holder) or holder == reviewer  # None or NaN (pandas 3 str column): unclaimed
        if row["case_id"] != after_case_id and row["status"] == "open" and free:
            return str(row["case_id"])
    return None
