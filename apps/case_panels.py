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

from app_state import open_case
from plain_text import md
from medssl.data import read_manifest
from medssl.errors import MedsslError
from medssl.review import case_view
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


@st.cache_data(show_spinner=False)
def _embeddings(path: str) -> tuple[list[str], Any]:
    return read_embeddings(path)


@st.cache_data(show_spinner=False)
def _view(data_dir: str, case_id: str, version: int) -> case_view.CaseViewData:
    manifest = _manifest(data_dir, version)
    domain = str(manifest.loc[manifest["case_id"] == case_id, "domain"].iloc[0])
    return case_view.view_case(data_dir, manifest, case_id, lambda: _dataset(data_dir, domain, version))


def show_case(case: dict[str, Any]) -> None:
    """The case's data as its domain shows it best, or an info box saying why it cannot."""
    data_dir = case["data_dir"]
    if not data_dir or not (Path(data_dir) / "manifest.parquet").is_file():
        st.info("This case's data folder is not known here; start the app with `--data DATA_DIR` to see the case.")
        return
    version = _version(data_dir)
    manifest = _manifest(data_dir, version)
    if not (manifest["case_id"] == case["case_id"]).any():
        st.info(f"Case {md(case['case_id'])} is not in {md(data_dir)}/manifest.parquet.")
        return
    try:
        view = _view(data_dir, case["case_id"], version)
    except MedsslError as exc:
        st.error(f"The case could not be read: {md(exc)}")
        return
    PANELS[type(view)](view)


def _image(view: case_view.ImageView) -> None:
    frames = view.frames
    frame = st.slider("Frame", 0, len(frames) - 1, view.frame) if len(frames) > 1 else 0
    center, width = case_view.default_window(frames)
    lo, hi = float(frames.min()), float(frames.max())
    span = max(hi - lo, 1e-6)
    c1, c2 = st.columns(2)
    level = c1.slider("Level (window centre)", lo, hi, min(max(center, lo), hi), step=span / 200)
    window = c2.slider("Window width", span / 200, 2 * span, min(width, 2 * span), step=span / 200)
    st.image(case_view.window_level(frames[frame], level, window), width=min(640, max(320, frames.shape[-1])),
             caption=f"frame {frame + 1} of {len(frames)} · window {window:.4g} / level {level:.4g}")


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


def _series(view: case_view.SeriesView) -> None:
    frame = view.frame
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for name in frame.columns:
        ax.plot(frame.index, frame[name], linewidth=0.8, label=name)
    if view.marker is not None:
        ax.axvline(view.marker, color="red", linestyle="--", label=view.marker_label)
    ax.set_xlabel(view.x_label)
    ax.legend(loc="upper right", fontsize="small")
    st.pyplot(fig)
    plt.close(fig)
    if view.caption:
        st.caption(md(view.caption))


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
    case_view.TablesView: _tables, case_view.Notice: _notice,
}


def show_similar(case_id: str, embeddings: str | None, states: dict[str, Any]) -> None:
    """The closest already-reviewed cases by embedding, with their decisions."""
    if embeddings is None:
        st.caption("Needs an embeddings file: start the app with `--embeddings` (from `medssl score --embeddings`).")
        return
    ids, matrix = _embeddings(embeddings)
    reviewed = {c for c, s in states.items() if s.status != "open"}
    near = nearest_cases(case_id, ids, matrix, reviewed, k=5)
    if near.empty:
        st.caption("No reviewed case with an embedding yet.")
        return
    for r in near.itertuples(index=False):
        s = states[r.case_id]
        if st.button(f"{md(r.case_id)} · {s.status} {md(s.label or '')} · distance {r.distance:.3f}", key=f"near-{r.case_id}"):
            open_case(r.case_id)
