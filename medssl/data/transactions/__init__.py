"""Transaction logs (CSV / Parquet): schema inference, encoding, entity histories, dataset.

Names are re-exported lazily (see medssl.lazy)."""

from medssl.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "TransactionDataset": "medssl.data.transactions.dataset",
        "encode_rows": "medssl.data.transactions.encoding",
        "fit_preprocessing": "medssl.data.transactions.encoding",
        "TableSchema": "medssl.data.transactions.schema",
        "infer_schema": "medssl.data.transactions.schema",
    },
)
