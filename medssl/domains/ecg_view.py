"""An ECG beat case as a clinician reads it: a 10 s rhythm strip from the record, on ECG paper.

``ecg_view(row, show_reference)`` reads the case's WFDB record (the manifest's ``source`` column,
written by ``medssl ingest signals --format wfdb``) around the beat with ``wfdb.rdrecord`` in the
record's physical units (its header's ``units``, e.g. mV), and its annotations in those seconds.
The front end draws it on standard paper (``PAPER``: 25 mm/s, 10 mm/mV).

What a reviewer sees of the reference annotation (decided here, documented in the README):

- beat annotations are the answer (their symbol is the beat's class), so a reviewer sees only
  where beats are (ticks, and the RR intervals in ms between them: timing is what a cardiologist
  measures on the strip anyway), never their symbols;
- rhythm annotations (``+`` with an aux note such as ``(B`` ventricular bigeminy or ``(T``) state
  the beat classes around them, so they are hidden from reviewers too;
- signal-quality annotations (``|`` isolated artifact, ``~`` change in signal quality) are no
  answer and help judge a beat, so everyone sees them;
- data scientists and admins (``show_reference=True``) see every annotation with its symbol and
  aux note, and the scored beat's symbol and class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

STRIP_S = 10.0  # seconds of rhythm strip around the beat
QUALITY_SYMBOLS = frozenset({"|", "~"})  # signal-quality annotations: shown to every viewer


@dataclass(frozen=True)
class Paper:
    """Standard ECG paper: ``mm_per_s`` and ``mm_per_mv``; minor squares 1 mm, major 5 mm."""

    mm_per_s: float = 25.0
    mm_per_mv: float = 10.0
    minor_mm: float = 1.0
    major_mm: float = 5.0

    @property
    def minor_s(self) -> float:
        return self.minor_mm / self.mm_per_s  # 0.04 s

    @property
    def major_s(self) -> float:
        return self.major_mm / self.mm_per_s  # 0.2 s

    @property
    def minor_mv(self) -> float:
        return self.minor_mm / self.mm_per_mv  # 0.1 mV

    @property
    def major_mv(self) -> float:
        return self.major_mm / self.mm_per_mv  # 0.5 mV


PAPER = Paper()


@dataclass(frozen=True)
class EcgView:
    """A beat case on a rhythm strip.

    ``strip``: index = seconds since the record's start (float), one column per lead, in ``units``
    (one unit per lead, from the WFDB header); ``window`` the same for the scored window (the
    model's input, ``(L, leads)``); ``annotations`` columns ``time_s, sample, symbol, aux_note,
    kind, rr_ms`` (kind ``beat`` / ``quality`` / ``rhythm`` / ``other``; ``rr_ms`` the RR interval
    ending at a beat; for reviewers only quality rows, and beats without their symbol); ``rr`` columns ``time_s`` (the later beat), ``rr_ms``;
    ``beat_s`` the scored beat's time; ``caption`` what the page says under the strip.
    """

    strip: pd.DataFrame
    window: pd.DataFrame
    units: list[str]
    fs: float
    annotations: pd.DataFrame
    rr: pd.DataFrame
    beat_s: float
    caption: str
    paper: Paper = PAPER


def _kind(symbol: str) -> str:
    from medssl.data.signals.aami import aami_class

    if aami_class(symbol) is not None:
        return "beat"
    if symbol in QUALITY_SYMBOLS:
        return "quality"
    return "rhythm" if symbol == "+" else "other"


def strip_bounds(sample: int, fs: float, length: int) -> tuple[int, int]:
    """``[start, stop)`` samples of a ``STRIP_S`` strip centred on ``sample`` within a record of ``length``."""
    n = int(round(STRIP_S * fs))
    start = min(max(0, sample - n // 2), max(0, length - n))
    return start, min(length, start + n)


def read_annotations(source: str, start: int, stop: int, fs: float, annotator: str = "atr") -> pd.DataFrame:
    """Annotations of record ``source`` in ``[start, stop)``: ``time_s, sample, symbol, aux_note, kind``."""
    import wfdb

    cols = ["time_s", "sample", "symbol", "aux_note", "kind"]
    if not Path(f"{source}.{annotator}").is_file():
        return pd.DataFrame(columns=cols)
    ann = wfdb.rdann(source, annotator, sampfrom=start, sampto=stop - 1)
    samples = np.asarray(ann.sample, dtype=np.int64)
    keep = (samples >= start) & (samples < stop)
    symbols = [s for s, k in zip(ann.symbol, keep) if k]
    notes = [str(a).strip("\x00") if a else "" for a, k in zip(ann.aux_note or [""] * len(samples), keep) if k]
    return pd.DataFrame({"time_s": samples[keep] / fs, "sample": samples[keep], "symbol": symbols,
                         "aux_note": notes, "kind": [_kind(s) for s in symbols]}, columns=cols)


def rr_intervals(beats_s: np.ndarray) -> pd.DataFrame:
    """RR intervals between consecutive beat times (s): ``time_s`` (the later beat), ``rr_ms``."""
    beats_s = np.sort(np.asarray(beats_s, dtype=np.float64))
    return pd.DataFrame({"time_s": beats_s[1:], "rr_ms": np.diff(beats_s) * 1000.0})


def for_viewer(annotations: pd.DataFrame, show_reference: bool) -> pd.DataFrame:
    """What a viewer may see of ``annotations``: everything for data scientists; for reviewers the
    quality annotations, and beats as positions only (symbol and aux note blanked)."""
    if show_reference:
        return annotations.reset_index(drop=True)
    shown = annotations[annotations["kind"].isin(["beat", "quality"])].copy()
    beat = shown["kind"] == "beat"
    shown.loc[beat, "symbol"] = ""
    shown.loc[beat, "aux_note"] = ""
    return shown.reset_index(drop=True)


def ecg_view(row: dict[str, Any], window: pd.DataFrame, beat_offset: int, show_reference: bool) -> EcgView:
    """The rhythm strip of a WFDB beat case (``row``: its manifest row with ``source``, ``sample``,
    ``fs``, ``record``; ``window``: its scored window ``(L, leads)`` indexed by sample, the beat
    ``beat_offset`` samples in). Raises ``DataError`` when the record can no longer be read."""
    import wfdb

    from medssl.errors import DataError

    source, sample, fs = str(row["source"]), int(row["sample"]), float(row["fs"])
    try:
        header = wfdb.rdheader(source)
        start, stop = strip_bounds(sample, fs, int(header.sig_len))
        record = wfdb.rdrecord(source, sampfrom=start, sampto=stop, channels=list(range(window.shape[1])))
    except (OSError, ValueError) as exc:
        raise DataError(f"record {source} could not be read for the rhythm strip ({type(exc).__name__}); "
                        "copy the record back or re-run `medssl ingest signals`") from None
    seconds = (start + np.arange(record.p_signal.shape[0])) / fs
    strip = pd.DataFrame(record.p_signal, index=pd.Index(seconds, name="s"), columns=list(window.columns))
    units = [str(u) for u in (record.units or ["?"] * strip.shape[1])]
    annotations = read_annotations(source, start, stop, fs)
    rr = rr_intervals(annotations.loc[annotations["kind"] == "beat", "time_s"].to_numpy())
    first = sample - beat_offset
    close = window.set_axis(pd.Index((first + np.arange(len(window))) / fs, name="s"))
    annotations["rr_ms"] = annotations["sample"].map(dict(zip(np.round(rr["time_s"] * fs).astype(np.int64),
                                                              rr["rr_ms"].round(0))))
    shown = for_viewer(annotations, show_reference)
    near = rr[np.isclose(rr["time_s"], sample / fs)]
    after = rr[rr["time_s"] > sample / fs + 1e-9].head(1)
    rr_text = (f"RR before the beat {near['rr_ms'].iloc[0]:.0f} ms" if len(near) else "no beat before it in the strip")
    rr_text += f", after it {after['rr_ms'].iloc[0]:.0f} ms" if len(after) else ""
    answer = f"Reference: beat {row['symbol']} (class {row['label']}). " if show_reference else ""
    n_quality = int((shown["kind"] == "quality").sum())
    caption = (f"{answer}Record {row['record']}, {stop - start} samples at {fs:g} Hz from {start / fs:.1f} s; the beat "
               f"at {sample / fs:.2f} s is marked; {rr_text}. Paper: 25 mm/s, 10 mm/mV (small squares 0.04 s x "
               f"0.1 mV, large 0.2 s x 0.5 mV). {n_quality} signal-quality annotation(s) in the strip"
               + ("" if show_reference else "; beat symbols and rhythm labels are the reference answer and are not shown") + ".")
    return EcgView(strip, close, units, fs, shown, rr, sample / fs, caption)
