"""Window/level presets of the image viewer, by modality.

CT pixels are Hounsfield units after the modality LUT (``medssl.domains.imaging.image_frames``),
so the radiologists' standard windows apply: lung W1500/L-600, mediastinum W350/L50, bone
W2000/L300. Every modality also has ``auto`` (the 0.5-99.5 percentile range of the case's
frames, the page's default); X-ray, MR, ultrasound and plain images have no fixed unit, so
``auto`` (and the page's custom sliders) is all they get.
"""

from __future__ import annotations

import numpy as np

CT_PRESETS: dict[str, tuple[float, float]] = {  # name -> (level = window centre, width), in HU
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (300.0, 2000.0),
}


def auto_window(frames: np.ndarray) -> tuple[float, float]:
    """``(center, width)`` covering the 0.5-99.5 percentile range of ``frames`` (width >= 1e-6)."""
    lo, hi = np.percentile(frames, [0.5, 99.5])
    return float((lo + hi) / 2), float(max(hi - lo, 1e-6))


def window_presets(modality: str | None, frames: np.ndarray) -> dict[str, tuple[float, float]]:
    """Presets ``name -> (center, width)`` for a case of DICOM ``modality`` (``None``/"" for
    non-DICOM images): ``auto`` first, then the CT windows for CT."""
    presets = {"auto": auto_window(frames)}
    if isinstance(modality, str) and modality.strip().upper() == "CT":
        presets.update(CT_PRESETS)
    return presets
