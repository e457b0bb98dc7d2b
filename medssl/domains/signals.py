"""The signals domain's few-label recipe, and signal cases (ECG beats, wearable windows) as the
review page shows them.

Few labels (``rr_hybrid``, the signals default): features ``[embedding (D) | side features (K) |
their squares (K)]``, where the side features are the standardised RR-interval channels an item
carries (``medssl.data.signals.dataset``: previous/next/local/record RR and their ratios; none for
windows without beat times, and then only the embedding block exists). The head is a logistic
regression whose column blocks (``embedding``, ``rr``, ``embedding+rr``) and strength are chosen
by patient-grouped cross-validation on the labelled cases only (``medssl.domains.hybrid``); the
candidates' scores and the choice go into metrics.json. Why: the inter-patient MIT-BIH methods
(de Chazal 2004, Mondejar-Guerra 2019) get most of their S-beat skill from RR intervals, which a
0.7 s beat window cannot see; and which block generalises best depends on the data, so the
labelled cases decide, never the validation or test records.

Case view: a WFDB beat as a 10 s rhythm strip from its record on ECG paper (``ecg_view``); other
windows as ingest cut them, one panel per lead, in the record's own units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from medssl.domains.case_views import CaseContext, SeriesView, register_case_view, series_frame
from medssl.domains.ecg_view import EcgView, ecg_view
from medssl.domains.hybrid import fit_block_logreg
from medssl.domains.recipe import FewLabelRecipe, register_few_label_recipe
from medssl.errors import DataError


def _side(x: torch.Tensor, preprocessing: dict[str, Any]) -> np.ndarray:
    from medssl.data.signals.dataset import side_values

    return side_values(x, preprocessing)


def rr_hybrid_features(x: torch.Tensor, emb: torch.Tensor, percentile: np.ndarray,
                       preprocessing: dict[str, Any]) -> np.ndarray:
    """``[embedding (B, D) | side features (B, K) | side features squared (B, K)]`` float64."""
    side = _side(x, preprocessing)
    return np.hstack([emb.detach().cpu().double().numpy(), side, side**2])


def side_width(features: np.ndarray, max_k: int = 64) -> int:
    """K of ``rr_hybrid_features`` ``(N, D + 2K)``: the largest K whose last K columns are the squares
    of the K before them (the fit interface passes features only); 0 when none are."""
    p = features.shape[1]
    for k in range(min(max_k, p // 2), 0, -1):
        if np.allclose(features[:, p - k:], features[:, p - 2 * k:p - k] ** 2, rtol=1e-9, atol=1e-12):
            return k
    return 0


def fit_rr_hybrid(features: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int, seed: int) -> nn.Linear:
    """``fit_block_logreg`` over the blocks embedding / rr / embedding+rr of ``rr_hybrid_features``."""
    p = features.shape[1]
    k = side_width(features)
    emb = np.arange(p) < p - 2 * k
    blocks = {"embedding": emb}
    if k:
        blocks.update({"rr": ~emb, "embedding+rr": np.ones(p, dtype=bool)})
    return fit_block_logreg(features, y, groups, n_classes, seed, blocks)


def signal_window(data_dir: str | Path, row: dict[str, Any]) -> pd.DataFrame:
    """The case's window as ingest cut it (``DATA_DIR/signals/windows.npy``, the record's own units,
    e.g. mV for MIT-BIH), indexed by sample within the window, one column per lead (the manifest's
    ``leads`` names when it has them, else ch0, ch1, ...)."""
    from medssl.data.signals.dataset import load_windows

    windows = load_windows(Path(data_dir))
    index = row.get("row")
    if pd.isna(index) or not 0 <= int(index) < len(windows):  # a negative row would read another case from the end
        raise DataError(f"case {row.get('case_id')!r} points at window row {index!r}, outside the {len(windows)} "
                        "windows of its DATA_DIR; re-run `medssl ingest signals`")
    window = np.array(windows[int(index)], dtype=np.float32)  # a copy, off the memory map
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
def signal_case_view(ctx: CaseContext) -> SeriesView | EcgView:
    """A WFDB beat case: its 10 s rhythm strip on ECG paper (``medssl.domains.ecg_view``; the
    reference symbols only for ``ctx.show_reference``). Other windows: one panel per lead, in
    seconds when the sampling rate is known."""
    row = ctx.row
    frame = signal_window(ctx.data_dir, row)
    beat = beat_offset(row, len(frame))
    source = row.get("source")
    missing = ""
    if beat is not None and isinstance(source, str) and source:
        try:
            return ecg_view(row, frame, beat, ctx.show_reference)
        except DataError as exc:  # the record moved or was deleted: the scored window still shows
            missing = f" {exc}."
    fs = row.get("fs")
    seconds = fs is not None and pd.notna(fs) and float(fs) > 0
    if seconds:
        frame = frame.set_axis(pd.Index(np.arange(len(frame)) / float(fs), name="s"))
    if beat is None:
        caption = f"Window of {len(frame)} samples, {', '.join(frame.columns)}."
    else:  # a beat ingested before the manifest named its record: the window only
        answer = f"Beat {row['symbol']} (class {row['label']}) at" if ctx.show_reference else "The beat at"
        caption = (f"{answer} sample {int(row['sample'])} of record {row['record']}; the red line marks it "
                   f"({len(frame) / float(row['fs']):.2f} s at {float(row['fs']):g} Hz)."
                   + (missing or " This data dir does not name the record's file: re-run `medssl ingest signals` "
                      "for the 10 s rhythm strip."))
    marker = None if beat is None else (beat / float(fs) if seconds else beat)
    return SeriesView(frame, x_label="seconds in the window" if seconds else "sample in the window", marker=marker,
                      marker_label="the beat", caption=caption)


RR_HYBRID = register_few_label_recipe(FewLabelRecipe(
    name="rr_hybrid",
    description="logistic regression on [embedding | RR side features and their squares]; blocks and strength "
                "chosen by patient-grouped cross-validation on the labelled cases",
    features=rr_hybrid_features,
    fit=fit_rr_hybrid,
))
