"""Imaging preprocessing: the settings (size, intensity scaling) and the geometric steps.

``resolve_preprocessing`` fills in the defaults of a (possibly partial) preprocessing dict; that
dict is what checkpoints keep. Per case, after intensity scaling (``medssl.data.imaging.intensity``):
zero-pad to a square (MONAI ``SpatialPad``, centred, so the aspect ratio is kept) -> resize to
``S x S`` (torchvision, bilinear with antialiasing) -> clamp to [0, 1] (``to_square``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from medssl.config import StrictConfig
from medssl.errors import ConfigError

DEFAULT_SIZE = 224  # DICOM and PNG/JPEG; npz sources default to their native size (28 for MedMNIST)


class ImagingPreprocessing(StrictConfig):
    """The preprocessing an imaging dataset applies; saved in checkpoints as a plain dict."""

    size: int
    intensity: str = "robust"
    percentiles: tuple[float, float] = (0.5, 99.5)
    window: tuple[float, float] | None = None


def resolve_preprocessing(manifest: pd.DataFrame, given: dict[str, Any] | None) -> dict[str, Any]:
    """The complete preprocessing dict: ``given`` (possibly partial) with defaults filled in.

    Defaults: ``size`` = the largest native side when every row is an npz image (28 for
    MedMNIST), else 224; ``intensity`` = ``"window"`` when a window is given, else ``"robust"``.
    Raises ``ConfigError`` for unknown keys or bad values.
    """
    data = dict(given or {})
    if "size" not in data:
        data["size"] = _native_npz_size(manifest) or DEFAULT_SIZE
    if data.get("window") is not None and "intensity" not in data:
        data["intensity"] = "window"
    try:
        prep = ImagingPreprocessing.model_validate(data)
    except Exception as exc:  # pydantic.ValidationError; message lists the bad keys
        raise ConfigError(f"invalid imaging preprocessing {data}: {exc}") from None
    if prep.size < 8 or prep.size > 4096:
        raise ConfigError(f"imaging preprocessing size={prep.size} must be between 8 and 4096 pixels")
    if prep.intensity not in ("robust", "window"):
        raise ConfigError(f"imaging preprocessing intensity={prep.intensity!r} must be 'robust' or 'window'")
    if prep.intensity == "window" and (prep.window is None or prep.window[1] <= 0):
        raise ConfigError("imaging preprocessing intensity='window' needs window=[center, width] with width > 0")
    lo, hi = prep.percentiles
    if not 0 <= lo < hi <= 100:
        raise ConfigError(f"imaging preprocessing percentiles={list(prep.percentiles)} must satisfy 0 <= low < high <= 100")
    out = prep.model_dump(mode="json")
    out["percentiles"] = [float(lo), float(hi)]
    if out["window"] is not None:
        out["window"] = [float(v) for v in out["window"]]
    return out


def _native_npz_size(manifest: pd.DataFrame) -> int | None:
    if len(manifest) == 0 or "source_format" not in manifest.columns:
        return None
    if not (manifest["source_format"] == "npz").all() or not {"rows", "columns"} <= set(manifest.columns):
        return None
    return int(max(manifest["rows"].max(), manifest["columns"].max()))


def to_square(image: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W)`` in [0, 1] -> ``(1, size, size)``: centred zero padding to a square, then resize."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    side = max(tensor.shape[-2:])
    # MONAI and torchvision are imported only when needed: together they cost seconds at start-up,
    # and native-size square images (MedMNIST) need neither
    if tensor.shape[-2] != tensor.shape[-1]:
        from monai.transforms import SpatialPad

        tensor = SpatialPad(spatial_size=(side, side), method="symmetric")(tensor).as_tensor()
    if side != size:
        from torchvision.transforms.v2 import functional as TF

        tensor = TF.resize(tensor, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return tensor.clamp_(0.0, 1.0).contiguous()


def grey(image: np.ndarray, grey_ndim: int = 2) -> np.ndarray:
    """npz pixels ``(..., H, W)``, ``(..., H, W, 1)`` or ``(..., H, W, 3)`` as ``(..., H, W)``
    luminance (ITU-R 601); ``grey_ndim`` is the number of dimensions of a grey input (2 for one
    image, 3 for a batch)."""
    if image.ndim == grey_ndim + 1:
        if image.shape[2] == 1:
            return image[..., 0]
        return image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return image

