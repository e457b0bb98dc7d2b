"""Parts of the Fine-tune page: the metrics beside the supervised baseline and the label-efficiency
curve, Register -> rescore, and "Label next". Each is a function the page calls top to bottom;
errors are shown on the page (st.error, saying how to fix them), never raised into the server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from app_state import embeddings_path
from medssl.errors import MedsslError
from plain_text import md

METRICS = ("auroc", "auprc", "accuracy", "balanced_accuracy", "macro_f1")
RESCORED = "rescored"  # session_state: {"model_id", "scores", "embeddings"} of the last rescore
EMBEDDINGS_KEY = "label_next_embeddings"  # the Label next embeddings field
PICKS = "label_next_picks"  # session_state: the cases "Label next" picked (a DataFrame)


def _failure(exc: Exception) -> str:
    if isinstance(exc, MedsslError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}. This is a bug in medssl; please report it with this message."


def show_metrics(metrics: dict[str, Any], mode: str) -> None:
    """The fine-tuned model's validation metrics, with the supervised baseline of the same run beside them."""
    point = metrics.get("validation") or metrics.get("metrics") or {}
    shown = [k for k in METRICS if k in point]
    st.caption(f"Validation metrics on {point.get('n', '?')} cases, trained with "
               f"{metrics.get('n_labelled', '?')} labels ({md(metrics.get('mode', mode))})")
    for col, name in zip(st.columns(max(1, len(shown))), shown):
        col.metric(name.replace("_", " "), f"{point[name]:.3f}")
    baseline = metrics.get("baseline") or {}
    base = baseline.get("validation")
    if base:
        table = pd.DataFrame({
            "metric": [m.replace("_", " ") for m in METRICS],
            "fine-tuned model": [point.get(m) for m in METRICS],
            "supervised baseline": [base.get(m) for m in METRICS],
        })
        table["difference"] = table["fine-tuned model"].astype(float) - table["supervised baseline"].astype(float)
        st.markdown("**Against the supervised baseline** (same labelled cases, same validation cases)")
        st.dataframe(table, hide_index=True, key="baseline_table")
        st.caption(f"Baseline: {md(baseline.get('method', ''))}, trained on {baseline.get('n_train', '?')} labelled "
                   f"cases, measured on {base.get('n', '?')}.")
    elif baseline.get("skipped"):
        st.caption(f"No supervised baseline in this run: {md(baseline['skipped'])}.")


def show_curve(run_dir: Path, checkpoint: str, data_dir: str) -> None:
    """The label-efficiency curve (AUROC against the share of labels) when ``medssl label-efficiency``
    wrote one into the run folder or the checkpoint's folder; else the command that draws it."""
    places = [run_dir, *([Path(checkpoint).parent] if checkpoint else [])]
    found = next((p / "label_efficiency.csv" for p in places if (p / "label_efficiency.csv").is_file()), None)
    if found is None:
        st.caption("Label-efficiency curve: none yet. Draw it with `medssl label-efficiency --checkpoint "
                   f"{md(checkpoint or 'CKPT')} --data {md(data_dir or 'DATA_DIR')} --out {md(run_dir)}`; "
                   "it shows here after the next fine-tune.")
        return
    try:
        table = pd.read_csv(found)
        curve = (table.groupby(["fraction", "method"])["auroc"].mean().unstack("method")
                 .rename_axis("labelled train cases (fraction)"))
    except (OSError, ValueError, KeyError) as exc:
        st.error(f"Cannot read the label-efficiency table {md(found)} ({md(exc)}); run `medssl label-efficiency` again.")
        return
    st.markdown("**Label efficiency** (validation AUROC, mean over seeds)")
    st.line_chart(curve)
    st.caption(f"From {md(found)} (`medssl label-efficiency`).")


def register_and_rescore(eng: Engine, model_path: str, data_dir: str, reviewer: str) -> None:
    """Register ``model_path``, score ``data_dir`` with it beside the model file and import the
    scores into the review store (medssl.review.rescore), with the steps in an st.status box."""
    from medssl.review.model_registry import register_model
    from medssl.review.rescore import rescore

    try:
        model_id = register_model(eng, model_path, reviewer)
    except Exception as exc:  # noqa: BLE001 - said on the page
        st.error(f"Registering failed: {md(_failure(exc))}")
        return
    st.success(f"Registered model {md(model_id[:12])} ({md(model_path)}).")
    if not data_dir:
        st.error("Not rescored: fill in DATA_DIR (the folder `medssl ingest` wrote) and register again, or run "
                 f"`medssl score --model {md(model_path)} --data DATA_DIR --out SCORES_PARQUET`.")
        return
    failure = None
    with st.status("Rescoring the queue with the new model ...", expanded=True) as status:
        try:
            done = rescore(eng, model_path, data_dir, say=st.write)
            status.update(label="Queue rescored", state="complete", expanded=False)
        except Exception as exc:  # noqa: BLE001 - said on the page
            failure = _failure(exc)
            status.update(label="Rescoring failed", state="error", expanded=True)
    if failure is not None:
        st.error(f"Rescoring failed: {md(failure)}")
        return
    st.session_state[RESCORED] = {"model_id": done.model_id, "scores": str(done.scores), "embeddings": str(done.embeddings)}
    st.session_state[EMBEDDINGS_KEY] = str(done.embeddings)  # Label next (below) uses the new model's embeddings
    st.success(f"Queue rescored with model {md(done.model_id[:12])}: {done.n_imported} cases imported, "
               f"{done.n_flagged} flagged; review decisions are kept. Scores: {md(done.scores)}")


@st.cache_data(show_spinner=False, max_entries=4)
def _read_embeddings(path: str, mtime: float) -> tuple[list[str], np.ndarray]:
    from medssl.review.embeddings import read_embeddings

    return read_embeddings(path)


def label_next_section(eng: Engine, reviewer: str) -> None:
    """Pick the undecided cases whose labels would help most and send them to the queue as a labelling task."""
    from medssl.review import queue_domains
    from medssl.review.label_next import label_next
    from medssl.review.label_requests import request_labels

    st.subheader("Label next")
    st.caption("The undecided cases whose labels would help the next fine-tune most: those the current model is "
               "least sure of (probability nearest a coin toss), spread over the embedding space so that no two "
               "labels are spent on look-alikes. Reviewers see them first with the queue's 'Label next' filter.")
    domains = queue_domains(eng)
    if not domains:
        st.info("No scored cases in the review store yet: rescore (above) or start the app with `medssl app --scores`.")
        return
    if EMBEDDINGS_KEY not in st.session_state:  # default: the app's --embeddings (a rescore puts its own file here)
        st.session_state[EMBEDDINGS_KEY] = embeddings_path() or ""
    emb_text = st.text_input("Embeddings file (from `medssl score --embeddings`; empty: uncertainty only)",
                             key=EMBEDDINGS_KEY)
    c1, c2 = st.columns(2)
    domain = c1.selectbox("Domain", ["all", *domains], key="label_next_domain",
                          help="all: with an embeddings file, the cases it holds; without, every domain")
    n = int(c2.number_input("Cases to label", min_value=1, max_value=500, value=10, step=1, key="label_next_n"))
    if st.button("Pick cases to label next"):
        try:
            emb = None
            if emb_text.strip():
                path = Path(emb_text.strip()).expanduser()
                if not path.is_file():
                    raise MedsslError(f"embeddings file {path} does not exist; give the file `medssl score --embeddings` "
                                      "wrote, or leave the field empty to rank by uncertainty only")
                emb = _read_embeddings(str(path), os.path.getmtime(path))
            st.session_state[PICKS] = label_next(eng, n, emb, domain=None if domain == "all" else domain)
        except Exception as exc:  # noqa: BLE001 - said on the page
            st.session_state.pop(PICKS, None)
            st.error(f"Cannot pick cases: {md(_failure(exc))}")
    picks = st.session_state.get(PICKS)
    if picks is None:
        return
    st.dataframe(picks, hide_index=True, key="label_next_table")
    if st.button(f"Send these {len(picks)} cases to the review queue", type="primary"):
        try:
            new = request_labels(eng, picks["case_id"].tolist(), reviewer, dict(zip(picks["case_id"], picks["reason"])))
        except Exception as exc:  # noqa: BLE001 - said on the page
            st.error(f"Cannot send the cases: {md(_failure(exc))}")
            return
        st.success(f"{new} new labelling request(s) ({len(picks) - new} were requested or decided already). "
                   "Reviewers find them under 'Label next' on the Review queue page.")
