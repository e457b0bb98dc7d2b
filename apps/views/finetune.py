"""Data scientists: fine-tune a pretrained encoder with the review decisions (or a labels CSV),
see the metrics beside the supervised baseline (and the label-efficiency curve), register the new
model and rescore the queue with it, and send the cases to label next to the review queue."""

import json
import os
from pathlib import Path

import streamlit as st

from app_state import engine, require_account
from finetune_panels import label_next_section, register_and_rescore, show_curve, show_metrics
from plain_text import md
from medssl.errors import MedsslError
from medssl.review import decisions_to_labels
from medssl.review.model_registry import registered_models

acc = require_account(data_science=True)
eng = engine()
st.title("Fine-tune with few labels")

checkpoint = st.text_input("Pretrained checkpoint (checkpoint.pt from `medssl pretrain`, or a model.pt)",
                           value=os.environ.get("MEDSSL_CHECKPOINT", ""))
data_dir = st.text_input("DATA_DIR (the ingested data the labels refer to)", value=os.environ.get("MEDSSL_DATA_DIR", ""))
source = st.radio("Labels", ["review decisions", "uploaded CSV", "the manifest's own labels"], horizontal=True)
uploaded = st.file_uploader("Labels CSV with columns case_id,label", type="csv") if source == "uploaded CSV" else None
c1, c2 = st.columns(2)
mode = c1.selectbox("Mode", ["auto", "linear", "knn", "full"], help="auto: the data domain's few-label recipe (the "
                    "default, chosen by measurement); linear: logistic regression on frozen features (fast, robust "
                    "with few labels); knn: nearest labelled cases; full: train the encoder too (slow)")
shots = c2.number_input("Labels per class (0 = every label available)", min_value=0, value=0, step=1)
out_dir = st.text_input("Output folder (RUN_DIR)", value=str(Path(checkpoint).parent / "finetune-app") if checkpoint else "")

overwrite = st.checkbox("Replace an earlier fine-tune in this output folder", value=False,
                        help="Without this, a folder that already holds a fine-tuned model is refused, so no run "
                             "is replaced by accident.")


def _output_folder(text: str) -> Path | None:
    """The output folder, created if needed; ``None`` (with an error on the page) when it cannot be."""
    out = Path(text).expanduser()
    blocker = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        st.error(f"The output folder cannot be created: {md(blocker)} is a file. Choose a folder path "
                 "that does not pass through a file.")
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        st.error(f"The output folder {md(out)} cannot be created ({md(exc.strerror or exc)}); choose a folder "
                 "you can write to.")
        return None
    return out


if st.button("Run fine-tune", type="primary"):
    if not (checkpoint and data_dir and out_dir):
        st.error("Fill in the checkpoint, DATA_DIR and output folder first.")
        st.stop()
    from medssl.train.finetune import FinetuneConfig, finetune

    out = _output_folder(out_dir)
    if out is None:
        st.stop()
    labels_csv = None
    if source == "review decisions":
        labels = decisions_to_labels(eng)
        if labels.empty:
            st.error("No review decision carries a label yet; review some cases or upload a CSV.")
            st.stop()
        labels_csv = out / "labels_from_review.csv"
        labels.to_csv(labels_csv, index=False)
    elif source == "uploaded CSV":
        if uploaded is None:
            st.error("Upload a labels CSV first.")
            st.stop()
        labels_csv = out / "labels_uploaded.csv"
        labels_csv.write_bytes(uploaded.getvalue())
    failure = None
    with st.status("Fine-tuning ...", expanded=True) as status:
        try:
            st.write("Loading the checkpoint, the data and the labels; fitting the classifier.")
            config = FinetuneConfig(mode=mode, shots=int(shots) or None)
            model_path = finetune(checkpoint, data_dir, out, config, labels_csv, overwrite=overwrite)
            status.update(label="Fine-tune finished", state="complete", expanded=False)
        except MedsslError as exc:
            failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - the page must say what failed, not die in the server log
            failure = f"{type(exc).__name__}: {exc}. This is a bug in medssl; please report it with this message."
        if failure is not None:
            status.update(label="Fine-tune failed", state="error", expanded=True)
    if failure is not None:
        # outside the status box, so the reason stays in view whatever the box does
        st.error(f"Fine-tune failed: {md(failure)}")
        st.stop()
    st.session_state["finetuned_model"] = str(model_path)

model_path = st.session_state.get("finetuned_model")
if model_path:
    metrics_file = Path(model_path).parent / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        show_metrics(metrics, mode)
        with st.expander("All metrics"):
            st.json(metrics)
    show_curve(Path(model_path).parent, checkpoint, data_dir)
    st.text(f"Model file: {model_path}")
    if st.button("Register this model for scoring", help="then score DATA_DIR with it and put the new scores and "
                 "predictions into the review queue (decisions already recorded stay)"):
        register_and_rescore(eng, model_path, data_dir, acc.name)

label_next_section(eng, acc.name)

st.subheader("Registered models")
models = registered_models(eng)
if models.empty:  # an if statement, not a bare conditional expression: Streamlit "magic" would render its value
    st.caption("None yet.")
else:
    st.dataframe(models, hide_index=True)
