"""Signal cases (ECG beats, wearable windows) as the review page shows them: the window as ingest
cut it, in the record's own units, with the annotated beat marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medssl.domains.case_views import CaseContext, SeriesView, register_case_view, series_frame


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


@register_case_view("signals")
def signal_case_view(ctx: CaseContext) -> SeriesView:
    """The window, one line per lead; a WFDB beat case marks its beat and says where it lies."""
    row = ctx.row
    frame = signal_window(ctx.data_dir, row)
    beat = beat_offset(row, len(frame))
    if beat is None:
        caption = f"Window of {len(frame)} samples, {', '.join(frame.columns)}."
    else:
        caption = (f"Beat {row['symbol']} (class {row['label']}) at sample {int(row['sample'])} of record "
                   f"{row['record']}; the red line marks it, {beat} samples into the window "
                   f"({len(frame) / float(row['fs']):.2f} s at {float(row['fs']):g} Hz).")
    return SeriesView(frame, x_label="sample in the window", marker=beat, marker_label="the beat", caption=caption)
