"""Transaction logs (CSV / Parquet): schema inference, encoding, entity histories, dataset."""

from medssl.data.transactions.dataset import TransactionDataset
from medssl.data.transactions.encoding import encode_rows, fit_preprocessing
from medssl.data.transactions.schema import TableSchema, infer_schema

__all__ = ["TableSchema", "TransactionDataset", "encode_rows", "fit_preprocessing", "infer_schema"]
