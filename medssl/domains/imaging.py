"""Imaging cases as the review page shows them: the frames the imaging dataset decodes.

The pixels come from the imaging dataset's own decode step (``ImagingDataset``: the same readers,
grey conversion, DICOM LUTs and ``--voi`` choice as training and scoring), so a reviewer sees the
pixels the model scored. They are shown at their stored resolution, before the dataset's intensity
scaling and resize (the page applies its own window/level instead).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medssl.domains.case_views import CaseContext, ImageView, register_case_view


def _int(value: Any, default: int) -> int:
    return int(value) if value is not None and pd.notna(value) else default


def _frame_rows(row: dict[str, Any]) -> pd.DataFrame:
    """One manifest row per frame of the case's file (a multi-frame DICOM is one case per frame)."""
    n = _int(row.get("frames"), 1) if row.get("source_format") == "dicom" else 1
    if n <= 1:
        return pd.DataFrame([row])
    return pd.DataFrame([{**row, "frame": i} for i in range(n)])


def image_frames(row: dict[str, Any]) -> np.ndarray:
    """Pixels of an imaging case as ``(F, H, W)`` float32 (F = frames of its file; 1 for a plain image).

    ``row`` is the case's manifest row (``source_format`` dicom / image / npz, ``path``, ...). Each
    frame is what ``ImagingDataset`` decodes for that row before intensity scaling: colour becomes
    ITU-R 601 luminance, DICOM pixels come after the modality LUT (Hounsfield units for CT) and,
    for rows ingested with ``--voi``, the file's VOI LUT. Raises ``ReaderError``/``DataError``.
    """
    from medssl.data.imaging.dataset import ImagingDataset

    rows = _frame_rows(row)
    dataset = ImagingDataset(".", rows, cache=False)  # no cache: nothing is written
    return np.stack([np.asarray(dataset.decode(i), dtype=np.float32) for i in range(len(rows))])


@register_case_view("imaging")
def imaging_case_view(ctx: CaseContext) -> ImageView:
    """All frames of the case's file, the case's own frame first on screen, with the window/level
    presets of its modality (the manifest's DICOM ``modality``)."""
    from medssl.domains.image_view import window_presets

    frames = image_frames(ctx.row)
    frame = _int(ctx.row.get("frame"), 0) if len(frames) > 1 else 0
    modality = ctx.row.get("modality")
    modality = modality.strip() if isinstance(modality, str) else ""
    return ImageView(frames, min(max(frame, 0), len(frames) - 1), modality, window_presets(modality, frames))
