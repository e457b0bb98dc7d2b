"""Read a transaction table (CSV or Parquet) into DATA_DIR.

Writes ``manifest.parquet`` (one row per transaction: ``case_id``, ``patient_id`` = entity or
case_id, ``domain="transactions"``, ``label``, ``split``, ``row`` (1-based data row in SRC),
``time`` when there is a time column, and the raw feature columns; non-numbers in numeric
columns become NaN), ``schema.json`` (the inferred roles; the manifest's ingest record holds the
copy readers use), ``errors.csv`` (counts of missing, infinite and wrong-type values per column,
duplicate or empty ids) and, with an entity column, ``transactions/history-<id>.pt`` (each case's
previous N same-entity transactions). All atomically (``medssl.data.commit``); a run that keeps
no transaction fails and leaves DATA_DIR as it was.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medssl.data.commit import IngestWriter, no_cases_error
from medssl.data.limits import MAX_HISTORY
from medssl.data.manifest import ErrorLog
from medssl.data.splits import _split_ids, assign_patient_splits, check_seed, check_split_fractions
from medssl.data.transactions.history import HISTORY_FILE, history_index, write_history
from medssl.data.transactions.schema import TableSchema, infer_schema
from medssl.errors import DataError

log = logging.getLogger(__name__)

DOMAIN = "transactions"
RESERVED = {"case_id", "patient_id", "domain", "label", "split", "time", "row"}
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
MAX_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class IngestOptions:
    """Column flags of ``medssl ingest transactions`` (``None`` = infer)."""

    id_col: str | None = None
    entity_col: str | None = None
    time_col: str | None = None
    label_col: str | None = None
    categorical: tuple[str, ...] | None = None
    numeric: tuple[str, ...] | None = None
    history: int = 8
    header_row: int | None = None
    max_categories: int = 50
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        check_split_fractions(self.val_fraction, self.test_fraction)
        check_seed(self.seed)
        if not 0 <= self.history <= MAX_HISTORY:
            raise DataError(f"--history {self.history} must be from 0 to {MAX_HISTORY}")
        if self.header_row is not None and self.header_row < 0:
            raise DataError(f"--header-row {self.header_row} must be 0 or more")
        if self.max_categories < 1:
            raise DataError(f"--max-categories {self.max_categories} must be 1 or more")


def _numeric_share_of_row(row: pd.Series) -> float:
    cells = row.dropna()
    cells = cells[cells.astype(str).str.strip() != ""]
    return float(pd.to_numeric(cells, errors="coerce").notna().mean()) if len(cells) else 0.0


def _separator(path: Path) -> str:
    return "\t" if path.name.lower().endswith(".tsv") else ","


def detect_header_row(path: Path) -> int:
    """0, or 1 when the first line is a group header above the real header (UCI style)."""
    head = pd.read_csv(path, header=None, nrows=3, dtype=str, sep=_separator(path))
    if len(head) == 3 and [_numeric_share_of_row(head.iloc[i]) for i in range(3)][:2] == [0.0, 0.0] \
            and _numeric_share_of_row(head.iloc[2]) > 0:
        return 1
    return 0


def read_table(path: str | Path, header_row: int | None = None) -> pd.DataFrame:
    """The table at ``path`` (CSV/TSV or Parquet). Missing, empty or unreadable -> ``DataError``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; pass a CSV or Parquet file of transactions")
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass one CSV or Parquet file of transactions")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); pass a file with a header line and transaction rows")
    name = path.name.lower()
    try:
        if name.endswith(PARQUET_SUFFIXES):
            df = pd.read_parquet(path)
        elif name.endswith(CSV_SUFFIXES):
            if header_row is None:
                header_row = detect_header_row(path)
                if header_row:
                    log.info("%s: the first line looks like a group header above the column names; "
                             "using line %d as the header (pass --header-row 0 to override)", path, header_row + 1)
            df = pd.read_csv(path, header=header_row, sep=_separator(path), low_memory=False)
        else:
            raise DataError(f"{path}: unknown file type; transactions are read from .csv, .tsv or .parquet files")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} holds no columns or rows; pass a file with a header line and transaction rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{path} could not be read as a table ({str(exc).splitlines()[0]}); "
                        "check the file format and the --header-row flag") from None
    if len(df) == 0:
        raise DataError(f"{path} has a header but no transaction rows")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _label(values: pd.Series) -> pd.Series:
    """Labels as clean strings (``1.0`` -> ``"1"``), missing -> None."""
    def one(v: Any) -> str | None:
        if pd.isna(v) or str(v).strip() == "":
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v).strip()
    return pd.Series([one(v) for v in values], index=values.index, dtype=object)


def _count_bad_values(df: pd.DataFrame, schema: TableSchema, src: Path, errors: ErrorLog) -> None:
    """One errors.csv row per column with missing values or non-numbers (count + example rows)."""
    for col in schema.numeric + schema.categorical:
        values = df[col]
        missing = values.isna() | (values.astype(str).str.strip() == "")
        wrong = infinite = pd.Series(False, index=values.index)
        if col in schema.numeric:
            number = pd.to_numeric(values, errors="coerce")
            wrong = ~missing & number.isna()
            infinite = ~missing & number.notna() & ~np.isfinite(number.fillna(0).astype(np.float64))
        for kind, bad, what in (("missing", missing, "missing value(s)"), ("wrong_type", wrong, "value(s) that are not numbers"),
                                ("non_finite", infinite, "infinite value(s)")):
            n = int(bad.sum())
            if n == 0:
                continue
            rows = (np.flatnonzero(bad.to_numpy()) + 1)[:MAX_EXAMPLE_ROWS].tolist()
            example = f" such as {values[bad].iloc[0]!r}" if kind != "missing" else ""
            errors.add(src, f"column {col!r}: {n} {what}{example} (data rows {rows}...); imputed with the train "
                       "median / unknown category and flagged by a missing indicator",
                       column=col, kind=kind, count=n)


def _case_ids(df: pd.DataFrame, id_col: str | None, src: Path, errors: ErrorLog) -> tuple[pd.Series, np.ndarray]:
    """Case ids and a keep-mask; empty or duplicate ids are logged and their rows dropped."""
    if id_col is None:
        return pd.Series(np.arange(1, len(df) + 1), index=df.index).astype(str), np.ones(len(df), bool)
    ids = df[id_col].astype(str).str.strip()
    empty = (df[id_col].isna() | (ids == "")).to_numpy()
    dup = ids.duplicated(keep="first").to_numpy() & ~empty
    for pos in np.flatnonzero(empty | dup):
        reason = "empty case id" if empty[pos] else f"duplicate case id {ids.iloc[pos]!r} (first one kept)"
        errors.add(f"{src}#row{pos + 1}", f"{reason} in column {id_col!r}; row skipped", kind="bad_id")
    return ids, ~(empty | dup)


def patient_splits(manifest: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """Patient-level train/val/test, stratified on each patient's majority label.

    Same contract and split routine as ``medssl.data.assign_patient_splits``, with the majority
    label computed vectorised (upstream runs a Python function per patient: about a minute for
    30,000 single-transaction accounts).
    """
    if "label" not in manifest.columns or manifest["label"].isna().any():
        return assign_patient_splits(manifest, val_fraction, test_fraction, seed)
    check_split_fractions(val_fraction, test_fraction)
    check_seed(seed)
    counts = manifest.groupby(["patient_id", "label"]).size().rename("n").reset_index()
    majority = counts.sort_values(["patient_id", "n", "label"], ascending=[True, False, True]).drop_duplicates("patient_id")
    ids, strat = majority["patient_id"].to_numpy(), majority["label"].astype(str).to_numpy()
    rest, test = _split_ids(ids, strat, test_fraction, seed)
    strat_rest = pd.Series(strat, index=ids).reindex(rest).to_numpy()
    train, val = _split_ids(rest, strat_rest, val_fraction / (1 - test_fraction), seed + 1)
    mapping = {**{p: "train" for p in train}, **{p: "val" for p in val}, **{p: "test" for p in test}}
    return manifest["patient_id"].map(mapping).rename("split")


def ingest_transactions(src: str | Path, out: str | Path, opts: IngestOptions) -> dict[str, Any]:
    """Ingest ``src`` into ``out`` (see the module docstring); returns a small summary dict."""
    src, out = Path(src), Path(out)
    raw = read_table(src, opts.header_row)
    schema = infer_schema(
        raw, opts.id_col, opts.entity_col, opts.time_col, opts.label_col,
        list(opts.categorical) if opts.categorical else None,
        list(opts.numeric) if opts.numeric else None, opts.max_categories,
    )
    errors = ErrorLog()
    _count_bad_values(raw, schema, src, errors)
    case_ids, keep = _case_ids(raw, schema.id_col, src, errors)
    frame = raw.loc[keep].copy()
    manifest = pd.DataFrame({"case_id": case_ids[keep].to_numpy()})
    if schema.entity_col:
        entity = frame[schema.entity_col]
        no_entity = (entity.isna() | (entity.astype(str).str.strip() == "")).to_numpy()
        if no_entity.any():
            errors.add(src, f"column {schema.entity_col!r}: {int(no_entity.sum())} empty entity id(s); each such "
                       "transaction is its own entity (patient_id = its case id)",
                       column=schema.entity_col, kind="missing", count=int(no_entity.sum()))
        manifest["patient_id"] = np.where(no_entity, manifest["case_id"], entity.astype(str))
    else:
        manifest["patient_id"] = manifest["case_id"]
    manifest["domain"] = DOMAIN
    manifest["row"] = np.flatnonzero(keep) + 1
    if schema.label_col:
        manifest["label"] = _label(frame[schema.label_col]).to_numpy()
    if schema.time_col:
        t = frame[schema.time_col]
        if not pd.api.types.is_numeric_dtype(t):
            parsed = pd.to_datetime(t, errors="coerce")
            t = parsed if parsed.notna().mean() >= 0.9 else t.astype(str)
        manifest["time"] = t.to_numpy()
    renames = {c: f"x_{c}" if c in RESERVED else c for c in schema.numeric + schema.categorical}
    for col in schema.numeric:
        manifest[renames[col]] = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    for col in schema.categorical:
        manifest[renames[col]] = frame[col].astype(object).where(frame[col].notna(), None).map(
            lambda v: None if v is None else str(v)).to_numpy()
    schema.numeric = [renames[c] for c in schema.numeric]
    schema.categorical = [renames[c] for c in schema.categorical]
    schema.amount = [renames[c] for c in schema.amount]
    if manifest.empty:
        raise no_cases_error(out, errors, f"no transaction of {src} is left: every row had an empty or duplicate id "
                             f"in --id-col {schema.id_col!r}")
    manifest["split"] = patient_splits(manifest, opts.val_fraction, opts.test_fraction, opts.seed).to_numpy()

    n_hist = 0
    with IngestWriter(out, DOMAIN) as writer:
        if schema.entity_col and opts.history > 0:
            index = history_index(manifest["patient_id"], manifest["time"] if "time" in manifest else None, opts.history)
            write_history(writer.path("history", HISTORY_FILE), manifest["case_id"].tolist(), index)
            n_hist = opts.history
            with_hist = int((index[:, 0] >= 0).sum())
            log.info("history: %d of %d transactions have earlier ones of the same %s (up to %d kept)",
                     with_hist, len(manifest), schema.entity_col, n_hist)
        writer.commit(manifest, errors, extra={"schema": schema.to_dict()},
                      sidecars={"schema.json": json.dumps(schema.to_dict(), indent=2).encode()})
    for line in schema.report():
        log.info("schema: %s", line)
    summary = {"cases": len(manifest), "patients": int(manifest["patient_id"].nunique()),
               "errors": len(errors), "history": n_hist,
               "splits": manifest["split"].value_counts().to_dict()}
    log.info("ingested %d transactions (%d entities) from %s into %s; %d problem(s) in errors.csv",
             summary["cases"], summary["patients"], src, out, summary["errors"])
    return summary
