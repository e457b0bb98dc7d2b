"""Which column of a transaction table plays which role, inferred and reported (never silent).

Roles: ``id`` (case id), ``entity`` (account = patient_id), ``time`` (orders an entity's history),
``label``, ``numeric`` and ``categorical`` features (``amount`` marks the numeric columns scaled
with a signed log1p), and ``excluded`` columns with the reason. Rules, applied to columns the
user did not name:

- a column named like a label (``label``, ``class``, ``target``, ``isFraud``, ``default ...``) is
  the label; one named like a time (``time``, ``timestamp``, ``step``, ``date``) orders histories;
- id-like columns are excluded: every value distinct and an id-ish name, or text with more
  than ``max_categories`` distinct values (account numbers, free text);
- low-cardinality text -> categorical; numbers and booleans -> numeric; text that is mostly
  numbers (>= 90 %) -> numeric, its non-numbers counted in errors.csv and imputed;
- numeric columns named like money (amount, amt, balance, bal, price, limit) get signed log1p.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medssl.data.record import read_record
from medssl.errors import DataError

LABEL_NAME = re.compile(r"^(label|class|target|y|is_?fraud|fraud)$|^default[ ._]", re.I)
TIME_NAME = re.compile(r"^(time|timestamp|step|date|datetime|event_time)$", re.I)
ID_NAME = re.compile(r"(^|[_ .])id$|^id[_ .]|^id$|_id$", re.I)
AMOUNT_NAME = re.compile(r"amount|amt|balance|bal(?![a-z])|price|limit", re.I)
NUMERIC_SHARE = 0.9
SCHEMA_NAME = "schema.json"


@dataclass
class TableSchema:
    """Roles of a table's columns (see the module docstring); JSON round-trips via ``to_dict``."""

    id_col: str | None = None
    entity_col: str | None = None
    time_col: str | None = None
    label_col: str | None = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    amount: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    inferred: dict[str, str] = field(default_factory=dict)  # column -> why the role was inferred

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TableSchema":
        """Inverse of ``to_dict``."""
        return cls(**data)

    def write(self, data_dir: str | Path) -> Path:
        """Write ``DATA_DIR/schema.json``."""
        path = Path(data_dir) / SCHEMA_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def read(cls, data_dir: str | Path) -> "TableSchema":
        """The schema ``medssl ingest transactions`` recorded with the manifest of ``data_dir``
        (``DATA_DIR/schema.json`` is the copy for people, and what data dirs from before ingest
        records are read from)."""
        record = read_record(data_dir) if (Path(data_dir) / "manifest.parquet").is_file() else None
        if record is not None and "schema" in record:
            try:
                return cls.from_dict(record["schema"])
            except TypeError as exc:
                raise DataError(f"the schema in {Path(data_dir) / 'manifest.parquet'} is damaged ({exc}); "
                                f"re-run `medssl ingest transactions SRC --out {data_dir}`") from None
        path = Path(data_dir) / SCHEMA_NAME
        if not path.is_file():
            raise DataError(f"{path} does not exist; run `medssl ingest transactions SRC --out {data_dir}` first")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:  # truncated JSON, unknown keys
            raise DataError(f"{path} could not be read ({type(exc).__name__}: {exc}); re-run `medssl ingest transactions SRC --out {data_dir}`") from None

    def report(self) -> list[str]:
        """Human-readable lines saying what each column became (logged at ingest)."""
        lines = [
            f"id column: {self.id_col or '(none: case_id = row number)'}",
            f"entity column: {self.entity_col or '(none: each transaction is its own patient_id, no history)'}",
            f"time column: {self.time_col or '(none)'}",
            f"label column: {self.label_col or '(none)'}",
            f"numeric ({len(self.numeric)}): {', '.join(self.numeric) or '-'}",
            f"  of which signed-log1p amounts: {', '.join(self.amount) or '-'}",
            f"categorical ({len(self.categorical)}): {', '.join(self.categorical) or '-'}",
        ]
        lines += [f"excluded {col}: {why}" for col, why in self.excluded.items()]
        lines += [f"inferred {col}: {why}" for col, why in self.inferred.items()]
        return lines


def numeric_share(values: pd.Series) -> float:
    """Fraction of the non-missing values of ``values`` that parse as numbers."""
    present = values.dropna()
    if present.empty:
        return 0.0
    return float(pd.to_numeric(present, errors="coerce").notna().mean())


def _require(df: pd.DataFrame, col: str | None, flag: str) -> None:
    if col is not None and col not in df.columns:
        raise DataError(
            f"{flag} {col!r} is not a column of the input; its columns are: {', '.join(map(str, df.columns))}"
        )


def infer_schema(
    df: pd.DataFrame,
    id_col: str | None = None,
    entity_col: str | None = None,
    time_col: str | None = None,
    label_col: str | None = None,
    categorical: list[str] | None = None,
    numeric: list[str] | None = None,
    max_categories: int = 50,
) -> TableSchema:
    """Roles of ``df``'s columns: the user's flags win, the rules above fill in the rest.

    Raises ``DataError`` when a named column does not exist.
    """
    for col, flag in ((id_col, "--id-col"), (entity_col, "--entity-col"), (time_col, "--time-col"), (label_col, "--label-col")):
        _require(df, col, flag)
    for col in (categorical or []):
        _require(df, col, "--categorical")
    for col in (numeric or []):
        _require(df, col, "--numeric")
    s = TableSchema(id_col=id_col, entity_col=entity_col, time_col=time_col, label_col=label_col)
    forced_cat, forced_num = list(categorical or []), list(numeric or [])
    named = {c for c in (id_col, entity_col, time_col, label_col) if c}
    free = [c for c in df.columns if c not in named and c not in forced_cat and c not in forced_num]

    if label_col is None:
        hit = next((c for c in free if LABEL_NAME.search(str(c))), None)
        if hit is not None:
            s.label_col, s.inferred[hit] = hit, "label (its name looks like a label; pass --label-col to choose another)"
            free.remove(hit)
    if time_col is None:
        hit = next((c for c in free if TIME_NAME.match(str(c))), None)
        if hit is not None:
            s.time_col, s.inferred[hit] = hit, "time (orders histories; not used as a feature; pass --numeric to use it)"
            free.remove(hit)
    if id_col is None:
        hit = next((c for c in free if ID_NAME.search(str(c)) and df[c].notna().all() and df[c].is_unique), None)
        if hit is not None:
            s.id_col, s.inferred[hit] = hit, "case id (every value distinct, id-like name)"
            free.remove(hit)

    for col in free:
        values = df[col]
        n_distinct = int(values.nunique(dropna=True))
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            if ID_NAME.search(str(col)) and values.is_unique:
                s.excluded[col] = "id-like (every value distinct, id-like name)"
            elif n_distinct <= 1:
                s.excluded[col] = "constant (one value)"
            else:
                s.numeric.append(col)
        elif numeric_share(values) >= NUMERIC_SHARE:
            s.numeric.append(col)
            s.inferred[col] = "numeric (text column whose values are mostly numbers; the rest go to errors.csv)"
        elif n_distinct <= 1:
            s.excluded[col] = "constant (one value)"
        elif n_distinct <= max_categories:
            s.categorical.append(col)
        else:
            s.excluded[col] = f"id-like text ({n_distinct} distinct values > {max_categories}; pass --categorical to keep it)"
    s.numeric = [c for c in df.columns if c in s.numeric or c in forced_num]
    s.categorical = [c for c in df.columns if c in s.categorical or c in forced_cat]
    s.amount = [c for c in s.numeric if AMOUNT_NAME.search(str(c))]
    if not s.numeric and not s.categorical:
        raise DataError(
            "no feature columns are left after excluding id, entity, time and label columns; "
            "name features with --numeric a,b or --categorical c,d"
        )
    return s
