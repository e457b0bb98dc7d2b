"""Read one DICOM file into float32 pixels: modality LUT (HU for CT), optional VOI LUT, MONOCHROME1 inversion.

``read_dicom_pixels(path, frame=None, voi=False) -> (array, meta)`` is the one reader the imaging
Dataset and ``medssl ingest dicom`` share, so a file that passes ingest also reads at training time.

Files without the 128-byte preamble + ``DICM`` (old ACR-NEMA style exports, pydicom's ``no_meta``
files) are never guessed silently: they are read only when their first bytes are a plausible
group 0x0008 data element, and the result is flagged ``has_file_meta=False`` (the transfer syntax is
then inferred from the encoding pydicom detected, as the missing header leaves no other source).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    pixel_array,
)
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medssl.errors import ReaderError

PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
# ITU-R BT.601 luma weights: RGB -> grey.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")


def decoder_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is a decoder failing on bad data (to report), not an interrupt (to re-raise).

    Python decoders raise ``Exception`` subclasses; Rust decoders built with pyo3 (pylibjpeg-rle)
    panic with ``pyo3_runtime.PanicException``, which derives from ``BaseException``.
    """
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"

def _looks_like_raw_dataset(head: bytes) -> bool:
    """True if ``head`` starts with a group 0x0008 element (a DICOM dataset without a file header).

    Accepts little- or big-endian tags, explicit VR (two upper-case letters) or implicit VR
    (a 4-byte length that fits in the file). Text, JSON, gzip, ICC profiles and random bytes fail.
    """
    if len(head) < 8:
        return False
    for order in ("<", ">"):
        group, elem = struct.unpack(order + "HH", head[:4])
        if group != 0x0008 or elem > 0x1250:
            continue
        vr = head[4:6]
        if vr.isalpha() and vr.isupper():
            return True
        (length,) = struct.unpack(order + "I", head[4:8])
        if order == "<" and length < 1 << 16:
            return True
    return False


def read_dicom_dataset(path: str | Path) -> tuple[Dataset, bool]:
    """Parse ``path`` (all elements, pixel data included) -> ``(dataset, has_file_meta)``.

    Raises ``ReaderError`` for non-DICOM, unparseable or truncated headers.
    """
    path = str(path)
    try:
        return pydicom.dcmread(path, force=False), True
    except InvalidDicomError:
        pass
    except Exception as exc:  # pydicom raises many types for damaged files
        raise ReaderError(path, f"unreadable DICOM: {type(exc).__name__}: {exc}") from None
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ReaderError(path, f"cannot open file: {exc}") from None
    if not _looks_like_raw_dataset(head):
        raise ReaderError(path, "not a DICOM file: no 'DICM' marker at byte 128 and no DICOM data element at the start")
    try:
        ds = pydicom.dcmread(path, force=True)
        _ = ds.get("SOPInstanceUID")  # forces parsing of the deferred header
    except Exception as exc:
        raise ReaderError(path, f"no DICOM header and not a readable raw dataset: {type(exc).__name__}: {exc}") from None
    if not ds.file_meta.get("TransferSyntaxUID"):
        ds.file_meta.TransferSyntaxUID = _inferred_syntax(ds)
    return ds, False


def _inferred_syntax(ds: Dataset) -> UID:
    """The uncompressed transfer syntax matching the encoding pydicom detected while parsing."""
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def has_pixels(ds: Dataset) -> bool:
    """True if the dataset carries image pixels (RT plans, SR, waveforms and DICOMDIRs do not)."""
    return any(tag in ds for tag in PIXEL_TAGS)


def frame_count(ds: Dataset) -> int:
    """Number of frames (``NumberOfFrames``, 1 when absent or empty)."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        raise ValueError(f"invalid NumberOfFrames {ds.get('NumberOfFrames')!r}") from None


def _stored_range(ds: Dataset) -> np.ndarray:
    """Smallest and largest storable value, int64 shape (2,), from BitsStored and PixelRepresentation."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0):
        return np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1], dtype=np.int64)
    return np.array([0, 2**bits - 1], dtype=np.int64)


def _grey(arr: np.ndarray, ds: Dataset, pi: str) -> tuple[np.ndarray, bool]:
    """Grey frames (..., H, W) float64 and whether the input was colour (then no LUTs apply)."""
    if pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim >= 3 and arr.shape[-1] in (3, 4) and (pi in _COLOUR or pi == "PALETTE COLOR"):
        return arr[..., :3].astype(np.float64) @ LUMA.astype(np.float64), True
    return arr, False


def _to_grey_float(arr: np.ndarray, ds: Dataset, pi: str, voi: bool, single: bool) -> np.ndarray:
    """Decoded stored values -> float32 grey (frames, H, W), or (H, W) when ``single``.

    Grey images: modality LUT (rescale slope/intercept or LUT), then the VOI LUT / first window
    when ``voi``; MONOCHROME1 is inverted within the representable range so that high = bright.
    Colour (RGB, YBR, palette) images become grey luminance (BT.601); no LUT applies to them.
    """
    arr, colour = _grey(arr, ds, pi)
    if not colour:
        lo_hi = _stored_range(ds)
        arr = apply_modality_lut(arr, ds)
        lo_hi = np.asarray(apply_modality_lut(lo_hi, ds)).astype(arr.dtype)  # same dtype as the image
        if voi:
            arr = apply_voi_lut(arr, ds)
            lo_hi = np.asarray(apply_voi_lut(lo_hi, ds))
        lo_hi = lo_hi.astype(np.float64)
        if pi == "MONOCHROME1":
            arr = (lo_hi.min() + lo_hi.max()) - np.asarray(arr, dtype=np.float64)
    out = np.asarray(arr, dtype=np.float32)
    if not single and frame_count(ds) == 1 and out.ndim == 2:
        out = out[None]
    expected = 2 if single else 3
    if out.ndim != expected:
        raise ValueError(f"unexpected decoded shape {out.shape} for photometric interpretation {pi}")
    if not np.isfinite(out).all():
        raise ValueError("decoded pixels contain NaN or infinite values")
    return out


def _photometric(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()


def dicom_pixels(ds: Dataset, frame: int | None = None, voi: bool = False) -> np.ndarray:
    """Decode pixels of ``ds`` as float32: (frames, H, W) when ``frame`` is None, else (H, W).

    See ``_to_grey_float`` for the LUT, window, MONOCHROME1 and colour rules.
    Raises ``ValueError`` / ``RuntimeError`` from the decoders for broken pixel data.
    """
    n_frames = frame_count(ds)
    if frame is not None and not 0 <= frame < n_frames:
        raise ValueError(f"frame {frame} out of range: the file has {n_frames} frame(s)")
    return _to_grey_float(pixel_array(ds, index=frame), ds, _photometric(ds), voi, single=frame is not None)


def validate_pixels(ds: Dataset, voi: bool = False) -> None:
    """What ingest needs: prove every frame decodes, and run the grey/LUT path on one pixel.

    Decoding is what fails on broken files; the per-pixel float work of ``dicom_pixels`` would add
    nothing to that proof, so it runs on a 1x1 probe of each frame (which still checks that the
    LUTs, window and shape are usable). The full conversion happens once, when a Dataset first
    reads the case. Raises like ``dicom_pixels``.
    """
    arr = pixel_array(ds)
    if arr.size == 0:
        raise ValueError("pixel data decodes to an empty array")
    probe = arr[:, :1, :1] if frame_count(ds) > 1 else arr[:1, :1]
    _to_grey_float(probe, ds, _photometric(ds), voi, single=False)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():  # float pixel data: every value counts
        raise ValueError("decoded pixels contain NaN or infinite values")


def pixel_spacing(ds: Dataset) -> str:
    """``"row\\\\col"`` in mm from PixelSpacing (or ImagerPixelSpacing), empty string if absent."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag)
        if value is not None and len(value) == 2:
            return f"{float(value[0])!r}\\{float(value[1])!r}"
    return ""


def dicom_meta(ds: Dataset, has_file_meta: bool = True) -> dict[str, Any]:
    """JSON-able image facts (no patient identifiers): modality, geometry, encoding, LUT tags."""
    return {
        "modality": str(ds.get("Modality") or ""),
        "rows": int(ds.get("Rows") or 0),
        "columns": int(ds.get("Columns") or 0),
        "frames": frame_count(ds),
        "pixel_spacing": pixel_spacing(ds),
        "photometric_interpretation": str(ds.get("PhotometricInterpretation") or ""),
        "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID") or ""),
        "rescale_slope": float(ds.get("RescaleSlope") or 1.0),
        "rescale_intercept": float(ds.get("RescaleIntercept") or 0.0),
        "has_file_meta": has_file_meta,
    }


def read_dicom_pixels(path: str | Path, frame: int | None = None, voi: bool = False) -> tuple[np.ndarray, dict]:
    """Read ``path`` -> (float32 pixels, meta); shape (frames, H, W) if ``frame`` is None else (H, W).

    Raises ``medssl.errors.ReaderError(path, reason)`` for anything unreadable: not DICOM, no pixel
    data (RT plan, SR, waveform, DICOMDIR), truncated or undecodable pixel data, bad frame index.
    """
    ds, has_meta = read_dicom_dataset(path)
    if not has_pixels(ds):
        raise ReaderError(str(path), non_image_reason(ds))
    try:
        pixels = dicom_pixels(ds, frame=frame, voi=voi)
        meta = dicom_meta(ds, has_meta)
    except BaseException as exc:  # decoders raise ValueError, RuntimeError, KeyError, pyo3 panics ...
        if not decoder_failed(exc):
            raise
        raise ReaderError(str(path), f"pixel data cannot be decoded: {type(exc).__name__}: {exc}") from None
    meta["voi"] = voi
    return pixels, meta


def non_image_reason(ds: Dataset) -> str:
    """Why a dataset without pixel data is skipped, naming its kind (SOP class / modality)."""
    sop_class = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    if str(sop_class or "") == MEDIA_STORAGE_DIRECTORY:
        return "DICOMDIR (a directory index, not an image); the files it lists are ingested on their own"
    kind = getattr(sop_class, "name", "") or str(ds.get("Modality") or "") or "unknown object"
    return f"no pixel data: non-image DICOM object ({kind}); skipped"
