"""Domain panels of the case page (kept out of case.py so that page reads top to bottom)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import streamlit as st

from app_state import open_case
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


def show_case(case: dict[str, Any]) -> None:
    """The case's data as its domain shows it best, or an info box saying why it cannot."""
    data_dir = case["data_dir"]
    if not data_dir or not (Path(data_dir) / "manifest.parquet").is_file():
        st.info("This case's data folder is not known here; start the app with `--data DATA_DIR` to see the case.")
        return
    manifest = _manifest(data_dir, _version(data_dir))
    match = manifest.index[manifest["case_id"] == case["case_id"]]
    if len(match) == 0:
        st.info(f"Case {case['case_id']} is not in {data_dir}/manifest.parquet.")
        return
    row = manifest.loc[match[0]].to_dict()
    try:
        if case["domain"] == "imaging":
            _imaging(row)
        elif case["domain"] == "transactions":
            _transactions(manifest, row)
        elif case["domain"] == "signals":
            _signal(data_dir, row)
        else:
            _series(data_dir, case["domain"], manifest, row)
    except MedsslError as exc:
        st.error(f"The case could not be read: {exc}")


def _imaging(row: dict[str, Any]) -> None:
    frames = case_view.image_frames(row)
    frame = st.slider("Frame", 0, len(frames) - 1, int(row.get("frame") or 0)) if len(frames) > 1 else 0
    center, width = case_view.default_window(frames)
    lo, hi = float(frames.min()), float(frames.max())
    span = max(hi - lo, 1e-6)
    c1, c2 = st.columns(2)
    level = c1.slider("Level (window centre)", lo, hi, min(max(center, lo), hi), step=span / 200)
    window = c2.slider("Window width", span / 200, 2 * span, min(width, 2 * span), step=span / 200)
    st.image(case_view.window_level(frames[frame], level, window), width=min(640, max(320, frames.shape[-1])),
             caption=f"frame {frame + 1} of {len(frames)} · window {window:.4g} / level {level:.4g}")


def _series(data_dir: str, domain: str, manifest: pd.DataFrame, row: dict[str, Any]) -> None:
    dataset = _dataset(data_dir, domain, _version(data_dir))
    if dataset is None:
        st.info(f"The {domain} reader is not installed in this medssl, so this case cannot be shown yet.")
        return
    rows = manifest[manifest["domain"] == domain].reset_index(drop=True)
    x = dataset[int(rows.index[rows["case_id"] == row["case_id"]][0])]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    if domain == "ehr":
        obs = case_view.ehr_observations(x, dataset.preprocessing)
        counts = obs["variable"].value_counts()  # default: the stay's most often measured (the vitals)
        default = sorted(sorted(counts.index, key=lambda v: (-counts[v], v))[:4])
        shown = st.multiselect("Variables", sorted(counts.index), default=default)
        for name in shown:
            part = obs[obs["variable"] == name]
            ax.plot(part["time_h"], part["value"], marker="o", label=name)
        ax.set_xlabel("hours since admission")
        st.caption("Points are the measured values; lines only join them.")
    else:
        frame = case_view.series_frame(x)
        for name in frame.columns:
            ax.plot(frame.index, frame[name], linewidth=0.8, label=name)
        ax.set_xlabel("sample")
    ax.legend(loc="upper right", fontsize="small")
    st.pyplot(fig)
    plt.close(fig)


def _signal(data_dir: str, row: dict[str, Any]) -> None:
    frame = case_view.signal_window(data_dir, row)
    beat = case_view.beat_offset(row, len(frame))
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for name in frame.columns:
        ax.plot(frame.index, frame[name], linewidth=0.8, label=name)
    if beat is not None:
        ax.axvline(beat, color="red", linestyle="--", label="the beat")
    ax.set_xlabel("sample in the window")
    ax.legend(loc="upper right", fontsize="small")
    st.pyplot(fig)
    plt.close(fig)
    if beat is not None:
        st.caption(f"Beat {row['symbol']} (class {row['label']}) at sample {int(row['sample'])} of record "
                   f"{row['record']}; the red line marks it, {beat} samples into the window "
                   f"({len(frame) / float(row['fs']):.2f} s at {float(row['fs']):g} Hz).")
    else:
        st.caption(f"Window of {len(frame)} samples, {', '.join(frame.columns)}.")


def _transactions(manifest: pd.DataFrame, row: dict[str, Any]) -> None:
    rows = manifest[manifest["domain"] == "transactions"]
    st.subheader("The transaction")
    st.dataframe(pd.DataFrame([row]), hide_index=True)
    cols = case_view.numeric_columns(rows)
    if cols:
        st.subheader("Features that deviate most")
        st.dataframe(case_view.deviating_features(rows.loc[rows["case_id"] == row["case_id"], cols].to_numpy()[0],
                                                  rows[cols].to_numpy(), cols), hide_index=True)
    st.subheader("The entity's history")
    history = rows[rows["patient_id"] == row["patient_id"]]
    if len(history) < 2:
        st.caption("No other transaction of this entity in the data."
                   + (" It was ingested without --entity-col: each transaction is its own entity."
                      if (rows["patient_id"] == rows["case_id"]).all() else ""))
        return
    if "time" in history.columns:
        history = history.sort_values("time", kind="stable")
    st.dataframe(history, hide_index=True)


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
        if st.button(f"{r.case_id} · {s.status} {s.label or ''} · distance {r.distance:.3f}", key=f"near-{r.case_id}"):
            open_case(r.case_id)
