"""What "why flagged" occludes, per domain: the named parts of one dataset item.

An *explanation unit* is a named set of positions of an item ``x`` (``(*input_shape)``, what the
domain dataset gives and the encoder reads). Occlusion (``medssl.scoring.explain``) sets one unit
at a time to its typical value and re-scores the case; the units whose removal lowers the anomaly
score most are what the case is flagged for. Units per domain:

- transactions: one per encoded column (a numeric column together with its ``__missing``
  indicator), named as in the data; with entity history, one more for the entity's earlier
  transactions;
- ehr: one per variable (its values and its observed-mask over all time steps), static
  variables included, named "HR (Heart rate)" where the variable table knows the name;
- signals: ``WINDOWS`` equal time windows over the recorded leads (in ms from the beat for WFDB
  beats), and each side feature (the RR-interval channels) on its own, named as a clinician reads it;
- imaging: a ``GRID`` x ``GRID`` grid of image regions (all channels);
- any other domain with flat items ``(F,)``: one unit per position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re

import numpy as np

WINDOWS = 8
GRID = 4


@dataclass(frozen=True)
class ExplainUnit:
    """One named part of an item: ``mask`` is a boolean array of the item's shape.

    ``kind`` is "feature", "variable", "window", "side feature", "history" or "region";
    ``box`` is ``(row0, row1, col0, col1)`` as fractions of the image height/width for regions.
    """

    name: str
    kind: str
    mask: np.ndarray
    box: tuple[float, float, float, float] | None = None


def _mask(shape: tuple[int, ...], index: Any) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[index] = True
    return m


def _transaction_units(prep: dict[str, Any], shape: tuple[int, ...]) -> list[ExplainUnit]:
    width = int(prep["n_numeric"]) + len(prep["cardinalities"])
    names = list(prep.get("feature_names") or [f"feature {j}" for j in range(width)])
    history = int(prep.get("history", 0))
    by_name: dict[str, list[int]] = {}  # positions j < width: the transaction itself (slot 0 with history)
    for j, name in enumerate(names[:width]):
        by_name.setdefault(name.removesuffix("__missing"), []).append(j)
    units = [ExplainUnit(name, "feature", _mask(shape, (np.asarray(pos),))) for name, pos in by_name.items()]
    if history:
        units.append(ExplainUnit("the entity's earlier transactions", "history", _mask(shape, (slice(width + 1, None),))))
    return units


def _readable(variable: str) -> str:
    """``"HR (Heart rate)"``: the raw name with its readable one where the variable table knows it."""
    from medssl.domains.ehr_variables import variable_info

    long = variable_info(variable).name
    return variable if long == variable else f"{variable} ({long})"


def _ehr_units(prep: dict[str, Any], shape: tuple[int, ...]) -> list[ExplainUnit]:
    names = list(prep["variables"]) + list(prep["static_names"])
    c = len(names)
    return [ExplainUnit(_readable(name), "variable", _mask(shape, ([v, c + v], slice(None))))
            for v, name in enumerate(names)]


RR_NAMES = {  # medssl.data.signals.rr_features, as a clinician reads them
    "rr_prev": "RR interval before the beat", "rr_next": "RR interval after the beat",
    "rr_local": "mean of the last 10 RR intervals", "rr_record": "the record's mean RR interval",
    "rr_prev_ratio": "RR before / the record's mean", "rr_next_ratio": "RR after / the record's mean",
    "rr_local_ratio": "recent RR / the record's mean", "rr_prev_next": "RR before / RR after",
}


def _window_name(a: int, b: int, length: int, fs: float | None) -> str:
    """``samples a-(b-1) of length``, with milliseconds from the beat (WFDB beat windows of the
    default geometry) or seconds into the window when the sampling rate ``fs`` is known."""
    name = f"samples {a}-{b - 1} of {length}"
    if not fs:
        return name
    from medssl.data.signals.wfdb_beats import BeatWindow

    before, after = BeatWindow().samples(fs)
    if before + after == length:
        return f"{name} ({(a - before) / fs * 1000:+.0f} to {(b - before) / fs * 1000:+.0f} ms from the beat)"
    return f"{name} ({a / fs:.2f}-{b / fs:.2f} s into the window)"


def _signal_units(prep: dict[str, Any], shape: tuple[int, ...], fs: float | None) -> list[ExplainUnit]:
    leads, length = int(prep["channels"]), int(prep["length"])
    edges = np.linspace(0, length, min(WINDOWS, length) + 1).round().astype(int)
    units = [ExplainUnit(_window_name(a, b, length, fs), "window", _mask(shape, (slice(0, leads), slice(a, b))))
             for a, b in zip(edges[:-1], edges[1:])]
    for k, name in enumerate(prep.get("side_features") or []):
        long = RR_NAMES.get(str(name))
        units.append(ExplainUnit(f"{long} ({name})" if long else str(name), "side feature",
                                 _mask(shape, (leads + k, slice(None)))))
    return units


def _vertical(r: float) -> str:
    return "top" if r < 1 / 3 else ("bottom" if r > 2 / 3 else "middle")


def _horizontal(c: float) -> str:
    return "left" if c < 1 / 3 else ("right" if c > 2 / 3 else "centre")


_REGION = re.compile(r"^Most unusual: [a-z ]*region \(rows (\d+)-(\d+), columns (\d+)-(\d+) of (\d+)x(\d+)\)")


def region_box(explanation: Any) -> tuple[float, float, float, float] | None:
    """``(row0, row1, col0, col1)`` as fractions of the image (ends exclusive) of the region an
    imaging explanation names first; ``None`` for any other text (or no text)."""
    found = _REGION.match(explanation) if isinstance(explanation, str) else None
    if not found:
        return None
    r0, r1, c0, c1, h, w = (int(g) for g in found.groups())
    return r0 / h, (r1 + 1) / h, c0 / w, (c1 + 1) / w


def _image_units(shape: tuple[int, ...]) -> list[ExplainUnit]:
    h, w = shape[-2], shape[-1]
    rows = np.linspace(0, h, GRID + 1).round().astype(int)
    cols = np.linspace(0, w, GRID + 1).round().astype(int)
    units = []
    for r0, r1 in zip(rows[:-1], rows[1:]):
        for c0, c1 in zip(cols[:-1], cols[1:]):
            where = f"{_vertical((r0 + r1) / 2 / h)} {_horizontal((c0 + c1) / 2 / w)}".replace("middle centre", "centre")
            name = f"{where} region (rows {r0}-{r1 - 1}, columns {c0}-{c1 - 1} of {h}x{w})"
            units.append(ExplainUnit(name, "region", _mask(shape, (..., slice(r0, r1), slice(c0, c1))),
                                     (r0 / h, r1 / h, c0 / w, c1 / w)))
    return units


def occlusion_fill(domain: str, x: np.ndarray, typical: np.ndarray) -> np.ndarray:
    """What a unit of each item of ``x`` ``(B, *input_shape)`` is set to when occluded ``(B, *input_shape)``:
    the typical item ``(*input_shape)`` (the reference median), or for images the image's own median
    grey per channel (pasting typical pixels into an image would draw new edges the scorer reacts to)."""
    if domain == "imaging" and x.ndim == 4:
        return np.broadcast_to(np.median(x, axis=(2, 3), keepdims=True), x.shape)
    return np.broadcast_to(typical[None], x.shape)


def explain_units(domain: str, preprocessing: dict[str, Any], input_shape: tuple[int, ...],
                  fs: float | None = None) -> list[ExplainUnit]:
    """The explanation units of an item of ``input_shape`` (see the module docstring); ``[]`` when
    the domain's items have no named parts medssl knows how to occlude. ``fs``: the signals'
    sampling rate in Hz, when every case has the same (time windows are then named in time too)."""
    shape = tuple(int(s) for s in input_shape)
    if domain == "transactions" and "n_numeric" in preprocessing:
        return _transaction_units(preprocessing, shape)
    if domain == "ehr" and "variables" in preprocessing:
        return _ehr_units(preprocessing, shape)
    if domain == "signals" and "channels" in preprocessing and len(shape) == 2:
        return _signal_units(preprocessing, shape, fs)
    if domain == "imaging" and len(shape) == 3:
        return _image_units(shape)
    if len(shape) == 1:
        return [ExplainUnit(f"feature {j}", "feature", _mask(shape, (j,))) for j in range(shape[0])]
    return []
