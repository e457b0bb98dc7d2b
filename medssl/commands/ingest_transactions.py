"""``medssl ingest transactions SRC --out DATA_DIR [column flags]``."""

from __future__ import annotations

import argparse

from medssl.commands.ingest_flags import fraction, int_range, seed
from medssl.data.limits import MAX_COUNT, MAX_HISTORY
from medssl.errors import ConfigError

HELP = """\
Read a table of transactions (billing, pharmacy, payments; CSV, TSV or Parquet, one row per
transaction) into DATA_DIR.

Each row becomes one case. Column roles are inferred and reported (log lines and
DATA_DIR/schema.json); name them yourself with the flags below when the guess is wrong:
id-like columns (account numbers, row ids) are left out, text with few distinct values becomes
a category, numbers stay numbers, money columns (amount, balance, ...) are log-scaled. Scaling
statistics are later fitted on the training split only. Missing values and text in number
columns are counted per column in DATA_DIR/errors.csv, filled with the typical value and
flagged, never silently dropped. With --entity-col (an account or patient), every transaction
also carries the same entity's previous --history transactions as context, and all of an
entity's transactions land in the same train/val/test split.

Example:
  medssl ingest transactions payments.csv --out data/pay --entity-col nameOrig \\
      --time-col step --label-col isFraud
"""


def _columns(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    cols = tuple(c.strip() for c in text.split(",") if c.strip())
    if not cols:
        raise ConfigError("a column list is empty; write the names separated by commas, e.g. --numeric amount,fee")
    return cols


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ingest transactions``."""
    parser = subparsers.add_parser(
        "transactions", help="a CSV/Parquet transaction log -> manifest.parquet", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="the transaction table (.csv, .tsv or .parquet)")
    parser.add_argument("--out", required=True, metavar="DATA_DIR", help="folder for manifest.parquet, schema.json, errors.csv")
    parser.add_argument("--id-col", metavar="COL", help="unique transaction id (default: an id-like column, else the row number)")
    parser.add_argument("--entity-col", metavar="COL", help="account / customer / patient the transaction belongs to "
                        "(becomes patient_id; enables histories). Default: none")
    parser.add_argument("--time-col", metavar="COL", help="time stamp or step that orders an entity's transactions "
                        "(default: a column named time, timestamp, step or date)")
    parser.add_argument("--label-col", metavar="COL", help="known outcome, e.g. fraud 0/1 (default: a column named "
                        "label, class, target, isFraud, ...). Never used by pretraining")
    parser.add_argument("--categorical", metavar="A,B", help="columns to treat as categories (comma-separated)")
    parser.add_argument("--numeric", metavar="C,D", help="columns to treat as numbers (comma-separated)")
    parser.add_argument("--history", type=int_range(0, MAX_HISTORY), default=8, metavar="N",
                        help="previous transactions of the same entity kept as context (default 8; 0 = none)")
    parser.add_argument("--header-row", type=int_range(0, MAX_COUNT), default=None, metavar="K",
                        help="0-based line holding the column names (default: 0, or 1 when line 0 is a group header)")
    parser.add_argument("--max-categories", type=int_range(1, MAX_COUNT), default=50, metavar="K",
                        help="text columns with more distinct values than this are treated as ids and left out (default 50)")
    parser.add_argument("--val-fraction", type=fraction, default=0.15, help="share of entities for validation (default 0.15)")
    parser.add_argument("--test-fraction", type=fraction, default=0.15, help="share of entities for the test split (default 0.15)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the split (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Ingest and print a one-line summary."""
    from medssl.data.transactions.ingest import IngestOptions, ingest_transactions

    if args.history < 0:
        raise ConfigError(f"--history must be 0 or more, got {args.history}")
    if args.header_row is not None and args.header_row < 0:
        raise ConfigError(f"--header-row must be 0 or more, got {args.header_row}")
    if args.max_categories < 1:
        raise ConfigError(f"--max-categories must be 1 or more, got {args.max_categories}")
    opts = IngestOptions(
        id_col=args.id_col, entity_col=args.entity_col, time_col=args.time_col, label_col=args.label_col,
        categorical=_columns(args.categorical), numeric=_columns(args.numeric), history=args.history,
        header_row=args.header_row, max_categories=args.max_categories,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
    )
    s = ingest_transactions(args.src, args.out, opts)
    print(f"{s['cases']} transactions ({s['patients']} entities, history {s['history']}); "
          f"{s['errors']} problem(s) -> {args.out}/errors.csv")
    return 0
