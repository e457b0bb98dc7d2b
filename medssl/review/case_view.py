"""What the case page shows, computed away from Streamlit: image frames with window/level,
series for EHR and ECG cases, and the most deviating features of a tabular case.

The page reads a case through the readers and datasets of its domain (``medssl.data``), so it
sees exactly what ingest accepted and what the model scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medssl.errors import DataError, UnknownNameError


def image_frames(row: dict[str, Any]) -> np.ndarray:
    """Raw pixels of an imaging case as ``(F, H, W)`` float32 (F = frames; 1 for a plain image).

    ``row`` is the case's manifest row (``source_format`` dicom / image / npz, ``path``, ...).
    DICOM pixels come after the modality LUT (Hounsfield units for CT); the case's own frame is
    among the F frames of a multi-frame file. Raises ``ReaderError``/``DataError`` if unreadable.
    """
    fmt = row.get("source_format")
    if fmt == "npz":
        from medssl.data.imaging.npz import load_npz_array

        image = np.asarray(load_npz_array(row["path"], row["array_key"])[int(row["array_index"])], np.float32)
        pixels = image.mean(axis=-1) if image.ndim == 3 else image
    elif fmt == "image":
        from medssl.data.imaging.images import read_image_pixels

        pixels, _ = read_image_pixels(row["path"])
    elif fmt == "dicom":
        from medssl.data.imaging.dicom import read_dicom_pixels

        pixels, _ = read_dicom_pixels(row["path"], frame=None)
    else:
        raise DataError(f"case {row.get('case_id')!r} has unknown source_format {fmt!r}; re-run the ingest")
    pixels = np.asarray(pixels, dtype=np.float32)
    return pixels[None] if pixels.ndim == 2 else pixels


def default_window(frames: np.ndarray) -> tuple[float, float]:
    """``(center, width)`` covering the 0.5-99.5 percentile range of ``frames`` (width >= 1e-6)."""
    lo, hi = np.percentile(frames, [0.5, 99.5])
    return float((lo + hi) / 2), float(max(hi - lo, 1e-6))


def window_level(image: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map ``image`` ``(H, W)`` to display grey levels uint8 ``(H, W)``: ``center - width/2`` -> 0,
    ``center + width/2`` -> 255, values outside clipped (the DICOM linear VOI window, simplified)."""
    if width <= 0:
        raise ValueError("window width must be positive")
    lo = center - width / 2.0
    scaled = (image.astype(np.float64) - lo) / width
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def domain_dataset(data_dir: str | Path, manifest: pd.DataFrame) -> Any | None:
    """The domain's dataset over ``manifest`` (one domain), or ``None`` if that domain's reader
    has not been installed (the page then says so)."""
    from medssl.data import get_domain

    try:
        domain = get_domain(str(manifest["domain"].iloc[0]))
    except UnknownNameError:
        return None
    return domain.make_dataset(Path(data_dir), manifest.reset_index(drop=True), None)


def series_frame(x: torch.Tensor, channel_names: list[str] | None = None) -> pd.DataFrame:
    """A ``(C, T)`` case tensor as a DataFrame indexed by time step with one column per channel."""
    arr = x.detach().cpu().numpy()
    if arr.ndim == 1:
        arr = arr[None]
    arr = arr.reshape(arr.shape[0], -1)
    names = channel_names if channel_names and len(channel_names) == arr.shape[0] else [f"ch{i}" for i in range(arr.shape[0])]
    return pd.DataFrame(arr.T, columns=names)


def signal_window(data_dir: str | Path, row: dict[str, Any]) -> pd.DataFrame:
    """The case's window as ingest cut it (``DATA_DIR/signals/windows.npy``, the record's own units,
    e.g. mV for MIT-BIH), indexed by sample within the window, one column per lead (the manifest's
    ``leads`` names when it has them, else ch0, ch1, ...)."""
    from medssl.data.signals.dataset import load_windows

    window = np.array(load_windows(Path(data_dir))[int(row["row"])], dtype=np.float32)  # a copy, off the memory map
    leads = row.get("leads")
    names = str(leads).split(",") if isinstance(leads, str) and leads else None
    return series_frame(torch.from_numpy(window), names)


def beat_offset(row: dict[str, Any], length: int) -> int | None:
    """Sample of the annotated beat within a ``length``-sample window of a WFDB beat case, or ``None``
    when the case is no beat (``ts``/``csv`` windows, un-annotated records) or its window is not the
    default ``--before-s``/``--after-s`` geometry (the manifest does not record other geometries)."""
    from medssl.data.signals.wfdb_beats import BeatWindow

    if row.get("source_format") != "wfdb" or pd.isna(row.get("symbol")) or pd.isna(row.get("fs")):
        return None
    before, after = BeatWindow().samples(float(row["fs"]))
    return before if before + after == length else None


def deviating_features(values: np.ndarray, reference: np.ndarray, names: list[str], top: int = 8) -> pd.DataFrame:
    """The ``top`` features of one case furthest from the reference cases, in standard deviations.

    ``values`` ``(F,)``, ``reference`` ``(N, F)``. Columns: feature, value, reference_mean, z
    (sorted by |z|, largest first). Constant reference features get z = 0.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    z = np.divide(values - mean, std, out=np.zeros_like(values), where=std > 0)
    order = np.argsort(-np.abs(z), kind="stable")[:top]
    return pd.DataFrame({
        "feature": [names[i] if i < len(names) else f"f{i}" for i in order],
        "value": values[order], "reference_mean": mean[order], "z": z[order],
    })


def ehr_observations(x: torch.Tensor, preprocessing: dict[str, Any]) -> pd.DataFrame:
    """Observed points of an EHR case tensor ``(2C, T)`` (values, then masks; see the EHR dataset)
    in the variables' own units: columns time_h, variable, value (one row per measured bin)."""
    names = list(preprocessing["variables"])
    n_var, n_chan = len(names), x.shape[0] // 2
    values, mask = x[:n_var].numpy(), x[n_chan:n_chan + n_var].numpy()
    mean = np.asarray(preprocessing["mean"], np.float32)[:n_var, None]
    std = np.asarray(preprocessing["std"], np.float32)[:n_var, None]
    raw = values * std + mean
    var_idx, t_idx = np.nonzero(mask > 0.5)
    return pd.DataFrame({
        "time_h": t_idx * float(preprocessing.get("step_hours", 1.0)),
        "variable": [names[i] for i in var_idx],
        "value": raw[var_idx, t_idx].astype(float),
    })


def numeric_columns(manifest: pd.DataFrame) -> list[str]:
    """Manifest columns holding a case's numeric features (ids, labels, splits, positions and the
    transaction time, which orders histories but is no feature, excluded)."""
    skip = {"case_id", "patient_id", "domain", "label", "split", "row", "time", "array_index", "frame"}
    return [c for c in manifest.columns if c not in skip and pd.api.types.is_numeric_dtype(manifest[c])
            and not pd.api.types.is_bool_dtype(manifest[c])]
