"""The regular-grid tensor store of an EHR data dir: ``DATA_DIR/ehr/grid.npz``.

Irregular events are binned on a regular grid (default hourly over 48 h; bin ``k`` covers
``[k*step, (k+1)*step)``, an event exactly at the window end goes into the last bin). Arrays:

- ``values``  (N, V, T) float32: mean of the observations in each bin; NaN where none
- ``mask``    (N, V, T) float32: 1 where the variable was observed in the bin, else 0
- ``delta``   (N, V, T) float32: hours since the variable was last observed (GRU-D's delta;
  counted from the window start before the first observation)
- ``static``  (N, S) float32: static descriptors (Age, Gender, ...); NaN where unknown
- ``case_ids`` (N,), ``variables`` (V,), ``static_names`` (S,): str; ``hours``, ``step_hours``.
- ``ingest_id`` (): str, the ingest that wrote the file (checked against the manifest's record).

Row ``i`` of every array belongs to ``case_ids[i]`` (the manifest's ``grid_row`` column points here).
An ingest writes ``ehr/grid-<ingest id>.npz`` and the manifest names it (``medssl.data.record``);
a data dir from before records has ``ehr/grid.npz``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medssl.data.limits import MAX_BINS, MAX_GRID_BYTES
from medssl.data.record import read_record, recorded_file
from medssl.errors import DataError

GRID_FILE = Path("ehr") / "grid.npz"
# Grids larger than MAX_GRID_BYTES are refused before anything is allocated (values, mask, delta as
# float32 plus the float64/int64 bincount buffers: about 28 bytes per stay x variable x bin).
BYTES_PER_CELL = 28
STATIC_PREFIX = "static:"


@dataclass
class GridStore:
    """Binned EHR data of N cases (see the module docstring for shapes)."""

    case_ids: np.ndarray
    variables: list[str]
    static_names: list[str]
    values: np.ndarray
    mask: np.ndarray
    delta: np.ndarray
    static: np.ndarray
    hours: float
    step_hours: float

    def write(self, path: str | Path, ingest_id: str = "") -> Path:
        """Write the store to the file ``path`` (uncompressed npz: it loads in one read)."""
        with open(path, "wb") as fh:  # a file, not a name: np.savez would append ".npz" to the name
            np.savez(
                fh, case_ids=np.asarray(self.case_ids, dtype=str), variables=np.asarray(self.variables, dtype=str),
                static_names=np.asarray(self.static_names, dtype=str), values=self.values, mask=self.mask,
                delta=self.delta, static=self.static, hours=np.float64(self.hours),
                step_hours=np.float64(self.step_hours), ingest_id=np.asarray(ingest_id),
            )
        return Path(path)

    def save(self, data_dir: str | Path) -> Path:
        """Write ``DATA_DIR/ehr/grid.npz`` (the layout before ingest records; ingests use ``write``)."""
        path = Path(data_dir) / GRID_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        return self.write(path)

    @classmethod
    def load(cls, data_dir: str | Path) -> "GridStore":
        """Read the grid the manifest of ``data_dir`` names; a missing file, or one written by
        another ingest than the manifest, raises ``DataError``."""
        record = read_record(data_dir)
        path = recorded_file(data_dir, "grid", GRID_FILE, "medssl ingest ehr SRC")
        if not path.is_file():
            raise DataError(f"{path} does not exist; run `medssl ingest ehr SRC --out {data_dir}` first")
        try:
            with np.load(path, allow_pickle=False) as z:
                written_by = str(z["ingest_id"]) if "ingest_id" in z.files else ""
                grid = cls(
                    case_ids=z["case_ids"], variables=z["variables"].tolist(), static_names=z["static_names"].tolist(),
                    values=z["values"], mask=z["mask"], delta=z["delta"], static=z["static"],
                    hours=float(z["hours"]), step_hours=float(z["step_hours"]),
                )
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # truncated, not an npz, array missing
            raise DataError(f"{path} could not be read ({type(exc).__name__}: {exc}); re-run `medssl ingest ehr SRC --out {data_dir}`") from None
        if record is not None and written_by != record["ingest_id"]:
            raise DataError(
                f"{path} was written by another ingest than {Path(data_dir) / 'manifest.parquet'} (interrupted "
                f"re-ingest?); re-run `medssl ingest ehr SRC --out {data_dir}`"
            )
        return grid


def check_grid_size(n_cases: int, n_variables: int, hours: float, step_hours: float) -> int:
    """The number of time bins; ``DataError`` naming the flags to change when the grid would have
    more than ``MAX_BINS`` bins or need more than ``MAX_GRID_BYTES`` of memory."""
    if not (np.isfinite(hours) and np.isfinite(step_hours)) or hours <= 0 or step_hours <= 0:
        raise DataError(f"--hours {hours} must be a positive multiple of --step-hours {step_hours} (both finite numbers above 0)")
    ratio = hours / step_hours
    n_bins = int(round(ratio)) if ratio <= MAX_BINS + 1 else MAX_BINS + 1
    if n_bins > MAX_BINS:
        raise DataError(f"--hours {hours:g} / --step-hours {step_hours:g} gives {ratio:.3g} time bins, more than the "
                        f"limit of {MAX_BINS}; raise --step-hours or lower --hours")
    if n_bins < 1 or abs(n_bins * step_hours - hours) > 1e-9:
        raise DataError(f"--hours {hours} must be a positive multiple of --step-hours {step_hours}")
    need = n_cases * max(n_variables, 1) * n_bins * BYTES_PER_CELL
    if need > MAX_GRID_BYTES:
        raise DataError(
            f"the grid of {n_cases} stays x {n_variables} variables x {n_bins} bins would need {need / 2**30:.1f} GiB "
            f"(limit {MAX_GRID_BYTES / 2**30:.0f} GiB); raise --step-hours, lower --hours or --max-variables, "
            "or ingest fewer stays (--limit)"
        )
    return n_bins


def time_since_observed(mask: np.ndarray, step_hours: float) -> np.ndarray:
    """GRU-D delta for ``mask`` (N, V, T): hours since the last observation before bin t."""
    delta = np.zeros_like(mask, dtype=np.float32)
    for t in range(1, mask.shape[-1]):
        delta[..., t] = step_hours + np.where(mask[..., t - 1] > 0, 0.0, delta[..., t - 1])
    return delta


def build_grid(
    events: pd.DataFrame, case_ids: list[str], variables: list[str], static_names: list[str],
    hours: float = 48.0, step_hours: float = 1.0,
) -> GridStore:
    """Bin cleaned ``events`` (``case_id, time_h, variable, value``) for ``case_ids`` in that order.

    Time-series variables not in ``variables`` are ignored; ``static:NAME`` rows fill ``static``
    (first value per case). Cases without any event get an all-missing row.
    """
    n_bins = check_grid_size(len(case_ids), len(variables), hours, step_hours)
    n, v, s = len(case_ids), len(variables), len(static_names)
    case_index = pd.Index(case_ids)
    is_static = events["variable"].str.startswith(STATIC_PREFIX)
    series = events[~is_static]
    rows = case_index.get_indexer(series["case_id"])
    cols = pd.Index(variables).get_indexer(series["variable"])
    bins = np.minimum(np.floor(series["time_h"].to_numpy() / step_hours).astype(np.int64), n_bins - 1)
    ok = (rows >= 0) & (cols >= 0)
    flat = np.ravel_multi_index((rows[ok], cols[ok], bins[ok]), (n, v, n_bins))
    sums = np.bincount(flat, weights=series["value"].to_numpy()[ok], minlength=n * v * n_bins)
    counts = np.bincount(flat, minlength=n * v * n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
    mask = (counts > 0).astype(np.float32)
    values, mask = values.reshape(n, v, n_bins), mask.reshape(n, v, n_bins)
    static = np.full((n, s), np.nan, dtype=np.float32)
    first = events[is_static].drop_duplicates(["case_id", "variable"])
    srows = case_index.get_indexer(first["case_id"])
    scols = pd.Index([STATIC_PREFIX + name for name in static_names]).get_indexer(first["variable"])
    sok = (srows >= 0) & (scols >= 0)
    static[srows[sok], scols[sok]] = first["value"].to_numpy()[sok]
    return GridStore(
        case_ids=np.asarray(case_ids, dtype=str), variables=list(variables), static_names=list(static_names),
        values=values, mask=mask, delta=time_since_observed(mask, step_hours), static=static,
        hours=float(hours), step_hours=float(step_hours),
    )


def choose_variables(events: pd.DataFrame, case_ids: list[str], max_variables: int) -> list[str]:
    """The ``max_variables`` time-series variables observed in most of ``case_ids`` (train cases), by name."""
    series = events[~events["variable"].str.startswith(STATIC_PREFIX) & events["case_id"].isin(case_ids)]
    per_case = series.drop_duplicates(["case_id", "variable"])["variable"].value_counts()
    ranked = sorted(per_case.items(), key=lambda kv: (-kv[1], kv[0]))[:max_variables]
    return sorted(name for name, _ in ranked)
