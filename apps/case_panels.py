"""Panels of the case page (kept out of case.py so that page reads top to bottom).

Each domain says what its case shows (``medssl.review.case_view.view_case``: an image, a timeline,
a series, tables or a notice); this module draws each kind of view, whatever the domain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import pandas as pd
import streamlit as st

from app_state import account, open_case
from plain_text import md
from medssl.data import read_manifest
from medssl.errors import MedsslError
from medssl.review import case_view
from medssl.review.case_view import region_box
from medssl.review.embeddings import nearest_cases, read_embeddings


# The caches are keyed by the manifest's mtime too: a data dir ingested again while the app runs
# is read again, not shown (and indexed) from the old manifest.
def _version(data_dir: str) -> int:
    return (Path(data_dir) / "manifest.parquet").stat().st_mtime_ns


@st.cache_data(show_spinner=False)
def _manifest(data_dir: str, version: int) -> pd.DataFrame:
    return read_manifest(data_dir)


@st.cache_resource(show_spinner="Reading the data set ...")
def _dataset(data_dir: str, domain: str, version: int) -> Any:
    manifest = _manifest(data_dir, version)
    return case_view.domain_dataset(data_dir, manifest[manifest["domain"] == domain])


@st.cache_resource(show_spinner=False)  # one shared matrix (never mutated): nearest_cases keeps its faiss index
def embeddings(path: str) -> tuple[list[str], Any]:
    """``(case_ids, matrix (N, D))`` of an embeddings file, read once per app process."""
    return read_embeddings(path)


@st.cache_data(show_spinner=False)
def _view(data_dir: str, case_id: str, version: int, show_reference: bool) -> case_view.CaseViewData:
    # show_reference is part of the cache key: a reviewer never gets the view cached for a data scientist
    manifest = _manifest(data_dir, version)
    domain = str(manifest.loc[manifest["case_id"] == case_id, "domain"].iloc[0])
    return case_view.view_case(data_dir, manifest, case_id, lambda: _dataset(data_dir, domain, version),
                               show_reference=show_reference)


def show_case(case: dict[str, Any]) -> None:
    """The case's data as its domain shows it best, or an info box saying why it cannot. Reference
    labels and annotations only for accounts that may fine-tune (data scientists, admins)."""
    data_dir = case["data_dir"]
    if not data_dir or not (Path(data_dir) / "manifest.parquet").is_file():
        st.info("This case's data folder is not known here; start the app with `--data DATA_DIR` to see the case.")
        return
    version = _version(data_dir)
    manifest = _manifest(data_dir, version)
    if not (manifest["case_id"] == case["case_id"]).any():
        st.info(f"Case {md(case['case_id'])} is not in {md(data_dir)}/manifest.parquet.")
        return
    acc = account()
    show_reference = bool(acc is not None and acc.can_fine_tune)
    try:
        view = _view(data_dir, case["case_id"], version, show_reference)
    except MedsslError as exc:
        st.error(f"The case could not be read: {md(exc)}")
        return
    if isinstance(view, case_view.ImageView):
        _image(view, region_box(case.get("explanation")))
    else:
        PANELS[type(view)](view)


def _image(view: case_view.ImageView, box: tuple[float, float, float, float] | None = None) -> None:
    """The frame through a window/level (a preset of the modality, or the sliders), zoom and pan;
    ``box`` (row0, row1, col0, col1 as fractions of the image) outlines the region named first in
    the case's "why flagged"."""
    import plotly.express as px

    frames = view.frames
    frame = st.slider("Frame", 0, len(frames) - 1, view.frame) if len(frames) > 1 else 0
    presets = view.presets or {"auto": case_view.default_window(frames)}
    lo, hi = float(frames.min()), float(frames.max())
    span = max(hi - lo, 1e-6)
    step = span / 200
    level_key, width_key, preset_key = "wl-level", "wl-width", "wl-preset"
    this = (st.session_state.get("case_id"), frames.shape, tuple(presets))
    if st.session_state.get("wl-case") != this or level_key not in st.session_state:  # a new case: its auto window
        st.session_state["wl-case"] = this
        st.session_state[preset_key] = "auto"
        _apply_preset(presets["auto"], lo, hi, span)

    def on_preset() -> None:
        name = st.session_state[preset_key]
        if name in presets:
            _apply_preset(presets[name], lo, hi, span)

    st.selectbox("Window preset", [*presets, "custom"], key=preset_key, on_change=on_preset,
                 format_func=lambda p: p if p in ("auto", "custom") else f"{p} (W {presets[p][1]:g} / L {presets[p][0]:g})")
    c1, c2 = st.columns(2)
    level = c1.slider("Level (window centre)", lo, hi, step=step, key=level_key,
                      on_change=lambda: st.session_state.__setitem__(preset_key, "custom"))
    window = c2.slider("Window width", step, 2 * span, step=step, key=width_key,
                       on_change=lambda: st.session_state.__setitem__(preset_key, "custom"))
    chosen = st.session_state[preset_key]
    if chosen in presets:  # the preset exactly, even where the sliders had to clip it
        level, window = presets[chosen]
    grey = case_view.window_level(frames[frame], level, window)
    fig = px.imshow(grey, binary_string=True)
    fig.update_layout(margin=dict(l=0, r=0, t=0, b=0), dragmode="pan", height=min(640, max(320, grey.shape[0])))
    if box is not None:
        h, w = grey.shape[:2]
        fig.add_shape(type="rect", x0=box[2] * w - 0.5, x1=box[3] * w - 0.5, y0=box[0] * h - 0.5, y1=box[1] * h - 0.5,
                      line=dict(color="#ff3b30", width=2))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    st.plotly_chart(fig, config={"scrollZoom": True, "displaylogo": False})
    unit = " HU" if view.modality.upper() == "CT" else ""
    st.caption(f"frame {frame + 1} of {len(frames)} · {view.modality or 'image'} · window {window:.4g}{unit} / level "
               f"{level:.4g}{unit} · scroll to zoom, drag to pan, double-click to reset"
               + (" · red box: the region named first under Why flagged" if box is not None else ""))


def _apply_preset(window: tuple[float, float], lo: float, hi: float, span: float) -> None:
    """Put a preset ``(center, width)`` into the sliders (clipped to their ranges)."""
    st.session_state["wl-level"] = min(max(float(window[0]), lo), hi)
    st.session_state["wl-width"] = min(max(float(window[1]), span / 200), 2 * span)


def _timeline(view: case_view.TimelineView) -> None:
    obs = view.observations
    shown = st.multiselect("Variables", sorted(obs["variable"].unique()), default=view.default)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for name in shown:
        part = obs[obs["variable"] == name]
        ax.plot(part["time_h"], part["value"], marker="o", label=name)
    ax.set_xlabel(view.x_label)
    if view.caption:
        st.caption(md(view.caption))
    ax.legend(loc="upper right", fontsize="small")
    st.pyplot(fig)
    plt.close(fig)


def _show(fig: Any, caption: str | None) -> None:
    """Draw a finished matplotlib figure (laid out tight), then its caption as plain text."""
    fig.tight_layout()
    st.pyplot(fig)
    plt.close(fig)
    if caption:
        st.caption(md(caption))


def _vitals(view: case_view.VitalsView) -> None:
    st.dataframe(view.demographics, hide_index=True)
    for warning in view.warnings:
        st.warning(md(warning))
    table = view.variables.set_index("variable")
    label = {v: f"{r['name']} ({r['unit']})" if r["unit"] else r["name"] for v, r in table.iterrows()}
    shown = st.multiselect("Variables", list(table.index), default=view.default, format_func=lambda v: label[v])
    if not shown:
        st.caption("Choose variables to plot.")
        return
    obs = view.observations
    hours = max(float(obs["time_h"].max()) if len(obs) else 0.0, 1.0)
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 1.5 * len(shown) + 0.6), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], shown):
        part = obs[obs["variable"] == name]
        low, high = table.loc[name, "low"], table.loc[name, "high"]
        if pd.notna(low) and pd.notna(high):
            ax.axhspan(low, high, color="tab:green", alpha=0.15, linewidth=0)
        ax.plot(part["time_h"], part["value"], marker="o", markersize=3, linewidth=1, color="tab:blue")
        ax.set_title(label[name], fontsize="small", loc="left")
        ax.tick_params(labelsize="small")
        ax.set_xlim(0, hours)
    axes[-1, 0].set_xlabel(view.x_label)
    _show(fig, view.caption)


def _paper(ax: Any, x0: float, x1: float, y0: float, y1: float, paper: Any) -> None:
    """ECG paper on ``ax``: minor lines every ``paper.minor_s`` s / ``paper.minor_mv`` mV, major
    every ``major_s`` / ``major_mv``, aligned to 0; the axes keep 1 mm equal on x and y."""
    import numpy as np

    for step, colour, width in ((paper.minor_s, "#f4c7c7", 0.4), (paper.major_s, "#e08080", 0.8)):
        xs = np.arange(np.ceil(x0 / step - 1e-9) * step, x1 + 1e-9, step)
        ax.vlines(xs, y0, y1, colors=colour, linewidth=width, zorder=0)
    for step, colour, width in ((paper.minor_mv, "#f4c7c7", 0.4), (paper.major_mv, "#e08080", 0.8)):
        ys = np.arange(np.ceil(y0 / step - 1e-9) * step, y1 + 1e-9, step)
        ax.hlines(ys, x0, x1, colors=colour, linewidth=width, zorder=0)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect(paper.mm_per_mv / paper.mm_per_s)  # 1 mV is 10 mm tall, 1 s is 25 mm wide
    ax.set_yticks(np.arange(np.ceil(y0), y1 + 1e-9, 1.0))  # every 1 mV (2 large squares)


def _lead_limits(values: Any, paper: Any) -> tuple[float, float]:
    import numpy as np

    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    lo, hi = np.floor(lo / paper.major_mv) * paper.major_mv, np.ceil(hi / paper.major_mv) * paper.major_mv
    if hi - lo < 2.0:  # at least 2 mV (20 mm) per lead
        mid = (hi + lo) / 2
        lo, hi = np.floor((mid - 1.0) / paper.major_mv) * paper.major_mv, np.ceil((mid + 1.0) / paper.major_mv) * paper.major_mv
    return float(lo), float(hi)


def _ecg_figure(frame: pd.DataFrame, units: list[str], view: case_view.EcgView, mark_beats: bool,
                width_in: float = 9.5) -> Any:
    """Leads stacked on ECG paper, scaled so the trace is ``width_in`` inches wide (the same scale
    on both axes: a 1 mm square stays square)."""
    import numpy as np

    paper = view.paper
    x0, x1 = float(frame.index[0]), float(frame.index[-1])
    limits = [_lead_limits(frame[c].to_numpy(), paper) for c in frame.columns]
    mm_w = (x1 - x0) * paper.mm_per_s
    mm_h = sum(hi - lo for lo, hi in limits) * paper.mm_per_mv
    scale = width_in / max(mm_w / 25.4, 1e-6)
    fig, axes = plt.subplots(len(frame.columns), 1, sharex=True, squeeze=False,
                             figsize=(mm_w / 25.4 * scale + 1.0, mm_h / 25.4 * scale + 0.5 * len(frame.columns)),
                             gridspec_kw={"height_ratios": [hi - lo for lo, hi in limits]})
    ann = view.annotations
    for ax, lead, unit, (lo, hi) in zip(axes[:, 0], frame.columns, units, limits):
        _paper(ax, x0, x1, lo, hi, paper)
        ax.plot(frame.index, frame[lead], color="black", linewidth=0.7)
        ax.set_ylabel(f"{lead} ({unit})", fontsize="small")
        ax.tick_params(labelsize="x-small")
        ax.axvline(view.beat_s, color="tab:blue", linewidth=1.2, alpha=0.6)
        inside = ann[(ann["time_s"] >= x0) & (ann["time_s"] <= x1)]
        for r in inside.itertuples(index=False):
            if r.kind == "beat" and not mark_beats:
                continue
            text = r.symbol + (f" {r.aux_note}" if r.aux_note else "")
            ax.text(r.time_s, hi - 0.05 * (hi - lo), text or "•", fontsize="x-small", ha="center", va="top",
                    color="tab:red" if r.kind == "quality" else "tab:purple")
    step = 1.0 if x1 - x0 > 3 else paper.major_s
    axes[-1, 0].set_xticks(np.arange(np.ceil(x0 / step) * step, x1 + 1e-9, step))
    axes[-1, 0].xaxis.set_major_formatter("{x:g}" if step >= 1 else "{x:.1f}")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return fig, axes


def _ecg(view: case_view.EcgView) -> None:
    st.caption(md(view.caption))
    # the 10 s strip in two rows of 5 s: one 10 s row in the page's case column would leave a 1 mm
    # square about 2 px wide; at 5 s a row the paper stays readable (same 25 mm/s, 10 mm/mV paper)
    start, end = float(view.strip.index[0]), float(view.strip.index[-1])
    middle = start + (end - start) / 2
    for lo_s, hi_s in ((start, middle), (middle, end)):
        part = view.strip[(view.strip.index >= lo_s) & (view.strip.index <= hi_s)]
        if len(part) < 2:
            continue
        fig, axes = _ecg_figure(part, view.units, view, mark_beats=True)
        top = axes[0, 0]
        lo, hi = top.get_ylim()
        beats = view.annotations[(view.annotations["kind"] == "beat") & view.annotations["time_s"].between(lo_s, hi_s)]
        for t in beats["time_s"]:
            top.plot([t, t], [lo, lo + 0.06 * (hi - lo)], color="tab:blue", linewidth=1)
        for r in view.rr.itertuples(index=False):
            if lo_s <= r.time_s - r.rr_ms / 2000.0 <= hi_s:
                top.text(r.time_s - r.rr_ms / 2000.0, lo + 0.08 * (hi - lo), f"{r.rr_ms:.0f}", fontsize="x-small",
                         ha="center", va="bottom", color="tab:blue")
        st.pyplot(fig)
        plt.close(fig)
    st.caption("Rhythm strip, 10 s in two rows of 5 s. Blue ticks: beats; numbers: RR intervals (ms); the blue line: the scored beat; "
               "red: signal-quality annotations (| artifact, ~ quality change).")
    close, _ = _ecg_figure(view.window, view.units, view, mark_beats=False, width_in=3.5)
    st.pyplot(close, width=420)
    plt.close(close)
    st.caption(f"The scored window ({len(view.window) / view.fs:.2f} s, what the model read), same paper.")
    if len(view.annotations):
        st.dataframe(view.annotations.drop(columns=["sample"]), hide_index=True)


def _series(view: case_view.SeriesView) -> None:
    frame = view.frame
    fig, axes = plt.subplots(len(frame.columns), 1, figsize=(9, 1.4 * len(frame.columns) + 0.6), sharex=True,
                             squeeze=False)
    for ax, name in zip(axes[:, 0], frame.columns):
        ax.plot(frame.index, frame[name], linewidth=0.8, color="black")
        ax.set_ylabel(name, fontsize="small")
        ax.tick_params(labelsize="small")
        if view.marker is not None:
            ax.axvline(view.marker, color="red", linestyle="--")
    axes[-1, 0].set_xlabel(view.x_label)
    _show(fig, view.caption)


def _tables(view: case_view.TablesView) -> None:
    for section in view.sections:
        st.subheader(md(section.title))
        if section.table is not None:
            st.dataframe(section.table, hide_index=True)
        if section.caption:
            st.caption(md(section.caption))


def _notice(view: case_view.Notice) -> None:
    st.info(md(view.message))


PANELS: dict[type, Callable[[Any], None]] = {
    case_view.ImageView: _image, case_view.TimelineView: _timeline, case_view.SeriesView: _series,
    case_view.TablesView: _tables, case_view.Notice: _notice, case_view.EcgView: _ecg,
    case_view.VitalsView: _vitals,
}


def show_similar(case_id: str, embeddings_file: str | None, states: dict[str, Any]) -> None:
    """The closest already-reviewed cases by embedding, with their decisions."""
    if embeddings_file is None:
        st.caption("Needs an embeddings file: start the app with `--embeddings` (from `medssl score --embeddings`).")
        return
    ids, matrix = embeddings(embeddings_file)
    reviewed = {c for c, s in states.items() if s.status != "open"}
    near = nearest_cases(case_id, ids, matrix, reviewed, k=5)
    if near.empty:
        st.caption("No reviewed case with an embedding yet.")
        return
    for r in near.itertuples(index=False):
        s = states[r.case_id]
        if st.button(f"{md(r.case_id)} · {s.status} {md(s.label or '')} · distance {r.distance:.3f}", key=f"near-{r.case_id}"):
            open_case(r.case_id)


def show_explanation(case: dict[str, Any]) -> None:
    """Why the case was flagged (the score file's ``explanation``, from ``medssl score``)."""
    text = case.get("explanation")
    if not isinstance(text, str) or not text:
        if case.get("flagged"):
            st.caption("Why flagged: this score file has no explanation (scored with `--no-explain`, or by an "
                       "older medssl); score again to get one.")
        return
    st.markdown("**Why flagged**")
    st.write(md(text))
    st.caption("Each part of the case (a column, variable, time window or image region) was set to its typical "
               "value in turn and the case re-scored; the parts that lower the anomaly percentile most come first.")
