"""What the case page shows, computed away from Streamlit.

Each domain says how its cases are shown (``medssl.domains.case_views``: one provider per domain,
reading the case through that domain's own readers and datasets, so the page sees exactly what
ingest accepted and what the model scored). This module asks for a case's view
(``view_case``) and holds the display arithmetic that is no domain's business: the window/level
of an image.

The domains' case-view helpers are re-exported here under their former names
(``image_frames``, ``ehr_observations``, ``signal_window``, ...) for callers of this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from medssl.domains.case_views import (
    CaseContext,
    CaseViewData,
    ImageView,
    Notice,
    SeriesView,
    TableSection,
    TablesView,
    TimelineView,
    case_view,
    deviating_features,
    domain_dataset,
    series_frame,
)
from medssl.domains.ecg_view import EcgView
from medssl.domains.ehr import ehr_observations
from medssl.domains.explain_units import region_box  # noqa: F401  (the case page outlines the region)
from medssl.domains.image_view import auto_window, window_presets
from medssl.domains.vitals_view import VitalsView
from medssl.domains.imaging import image_frames
from medssl.domains.signals import beat_offset, signal_window
from medssl.domains.transactions import numeric_columns

__all__ = [
    "CaseViewData", "EcgView", "ImageView", "Notice", "VitalsView", "window_presets", "SeriesView", "TableSection", "TablesView", "TimelineView",
    "view_case", "default_window", "window_level",
    "beat_offset", "deviating_features", "domain_dataset", "ehr_observations", "image_frames", "numeric_columns",
    "series_frame", "signal_window",
]


def view_case(data_dir: str | Path, manifest: pd.DataFrame, case_id: str,
              make_dataset: Callable[[], Any | None] | None = None, show_reference: bool = False) -> CaseViewData:
    """The view of ``case_id`` (a row of ``manifest``, the data dir's manifest) as its domain shows it.

    ``make_dataset`` builds the domain's dataset over the manifest rows of the case's domain (a
    front end passes a cached one); ``KeyError`` if the case is not in ``manifest``, ``DataError``
    / ``ReaderError`` if its data cannot be read. ``show_reference``: include the reference answer
    (labels, label annotations); only for accounts that may see it (data scientists, admins).
    """
    return case_view(CaseContext.of(data_dir, manifest, case_id, make_dataset, show_reference))


def default_window(frames: np.ndarray) -> tuple[float, float]:
    """``(center, width)`` covering the 0.5-99.5 percentile range of ``frames`` (width >= 1e-6)."""
    return auto_window(frames)


def window_level(image: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map ``image`` ``(H, W)`` to display grey levels uint8 ``(H, W)``: ``center - width/2`` -> 0,
    ``center + width/2`` -> 255, values outside clipped (the DICOM linear VOI window, simplified)."""
    if width <= 0:
        raise ValueError("window width must be positive")
    lo = center - width / 2.0
    scaled = (image.astype(np.float64) - lo) / width
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)
