"""How one queue row reads on the page: the texts of its cells, whatever pandas made of its
missing values.

A row of :func:`medssl.review.queue.list_queue` may hold ``None`` (object columns) or NaN (pandas 3
turns a ``[str, None]`` list into a ``str`` column holding NaN); identity tests such as
``value is None`` are wrong for the latter. Everything here tests ``pd.isna`` instead, so both give
the same texts (tests/test_review_workflow.py checks it on both dtypes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

NO_VALUE = "—"


def _text(value: Any) -> str | None:
    """``None`` for a missing value (None, NaN, NaT, pd.NA), else the value as text."""
    return None if value is None or pd.isna(value) else str(value)


@dataclass(frozen=True)
class RowText:
    """The cells of one queue row as plain text, plus the two values the page acts on.

    ``label``/``holder``: the standing decision's label and the claim holder, ``None`` when there is none.
    """

    case_id: str
    patient_id: str
    domain: str
    predicted: str
    probability: str
    score: str
    percentile: str
    status: str
    claimed: str
    label: str | None
    holder: str | None


def row_text(row: Any) -> RowText:
    """The texts of one row (an ``itertuples`` row or a mapping with ``QUEUE_COLUMNS``)."""
    get = row.get if isinstance(row, dict) else (lambda name: getattr(row, name, None))
    label, holder = _text(get("label")), _text(get("claimed_by"))
    until = get("claimed_until")
    claimed = NO_VALUE if holder is None else holder
    if holder is not None and until is not None and not pd.isna(until):
        claimed += f" until {pd.Timestamp(until).to_pydatetime():%H:%M} UTC"
    proba = get("predicted_proba")
    status = str(get("status"))
    return RowText(
        case_id=str(get("case_id")), patient_id=str(get("patient_id")), domain=str(get("domain")),
        predicted=_text(get("predicted_label")) or NO_VALUE,
        probability=NO_VALUE if proba is None or pd.isna(proba) else f"{float(proba):.2f}",
        score=f"{float(get('score')):.3g}", percentile=f"{float(get('domain_percentile')):.1f}",
        status=status if label is None else f"{status} ({label})", claimed=claimed, label=label, holder=holder,
    )

