"""RR-interval side features of ECG beats, from a record's beat times (de Chazal et al. 2004;
Mondéjar-Guerra et al. 2019): what a 0.7 s beat window cannot see.

For beat ``i`` of a record whose beats sit at samples ``s_0 < s_1 < ...`` (every annotated beat of
the record, also those whose window falls off the record's edge, and Q beats), in seconds:

- ``rr_prev``  = ``s_i - s_{i-1}``                          (causal)
- ``rr_next``  = ``s_{i+1} - s_i``                          (needs the next beat)
- ``rr_local`` = mean of the previous ``LOCAL_BEATS`` RR intervals, ``rr_prev`` included (causal)
- ``rr_record`` = mean RR interval of the whole record      (needs the whole record)
- ratios ``rr_prev_ratio = rr_prev / rr_record``, ``rr_next_ratio = rr_next / rr_record``,
  ``rr_local_ratio = rr_local / rr_record``, ``rr_prev_next = rr_prev / rr_next``.

Undefined values are NaN: ``rr_prev``/``rr_local`` of a record's first beat, ``rr_next`` of its
last, everything of a record with fewer than two beats. ``SignalDataset`` turns them into input
channels (log, standardised on the train split, NaN -> the train mean), and the signals few-label
recipe (``medssl.domains.signals``) reads them next to the embeddings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LOCAL_BEATS = 10
RR_COLUMNS = ("rr_prev", "rr_next", "rr_local", "rr_record",
              "rr_prev_ratio", "rr_next_ratio", "rr_local_ratio", "rr_prev_next")


def rr_features(beat_samples: np.ndarray, at: np.ndarray, fs: float) -> pd.DataFrame:
    """RR features ``(len(at), 8)`` (columns ``RR_COLUMNS``, seconds or ratios, NaN where undefined).

    ``beat_samples`` ``(M,)``: sample of every beat of the record (any order, duplicates dropped);
    ``at`` ``(N,)``: samples of the beats to describe (each one of ``beat_samples``); ``fs`` Hz.
    """
    beats = np.unique(np.asarray(beat_samples, dtype=np.int64))
    at = np.asarray(at, dtype=np.int64)
    out = pd.DataFrame(np.nan, index=np.arange(len(at)), columns=list(RR_COLUMNS), dtype=np.float64)
    if len(beats) < 2 or len(at) == 0:
        return out
    rr = np.diff(beats).astype(np.float64) / float(fs)  # rr[j] = interval between beat j and j + 1
    pos = np.searchsorted(beats, at)
    prev = np.full(len(at), np.nan)
    nxt = np.full(len(at), np.nan)
    has_prev = pos > 0
    has_next = pos < len(beats) - 1
    prev[has_prev] = rr[pos[has_prev] - 1]
    nxt[has_next] = rr[pos[has_next]]
    csum = np.concatenate([[0.0], np.cumsum(rr)])
    lo = np.maximum(pos - LOCAL_BEATS, 0)
    count = pos - lo
    local = np.full(len(at), np.nan)
    local[has_prev] = (csum[pos[has_prev]] - csum[lo[has_prev]]) / count[has_prev]
    record = float(rr.mean())
    out["rr_prev"], out["rr_next"], out["rr_local"], out["rr_record"] = prev, nxt, local, record
    out["rr_prev_ratio"] = prev / record
    out["rr_next_ratio"] = nxt / record
    out["rr_local_ratio"] = local / record
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = prev / nxt
    out["rr_prev_next"] = np.where(np.isfinite(ratio), ratio, np.nan)
    return out
