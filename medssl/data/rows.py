"""Row pointers of a manifest into a data file (``grid_row``, ``row``, ``array_index``), checked.

A hand-edited or foreign manifest must not read another case's data: numpy would take ``-1`` as
the last row. Every pointer must be a whole number in ``[0, n)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medssl.errors import DataError


def row_indices(manifest: pd.DataFrame, column: str, n: int, data_dir: str | Path) -> np.ndarray:
    """``manifest[column]`` as int64 ``(len(manifest),)``; ``DataError`` naming the first bad row
    when a value is missing, not whole, negative or ``>= n`` (the data file's length)."""
    values = pd.to_numeric(manifest[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0) | (values >= n)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"the manifest of {data_dir} has {column} {manifest[column].iloc[i]} in row {i}, outside 0..{n - 1} of its data; {int(bad.sum())} such row(s). "
            "Restore the manifest or re-run the ingest"
        )
    return values.astype(np.int64)
