"""One case: the data by domain, its score, the decision form, earlier decisions, similar cases."""

import numpy as np
import pandas as pd
import streamlit as st

from app_state import embeddings_path, engine, require_account
from medssl.errors import MedsslError
from medssl.review import (
    ReviewError, active_claims, add_note, case_events, case_state, case_states, get_case,
    record_decision, release_case, undo_last,
)
import case_panels
from plain_text import md

acc = require_account()
eng = engine()
case_id = st.session_state.get("case_id")
if not case_id:
    st.info("Open a case from the review queue.")
    st.stop()
try:
    case = get_case(eng, case_id)
except ReviewError as exc:
    st.error(md(exc))
    st.stop()

# every value from data goes through md() (plain_text.py): shown as its characters, never as Markdown
st.title(f"Case {md(case_id)}")
st.caption(f"patient {md(case['patient_id'])} · {md(case['domain'])} · model {md(case['model_id'])}")
left, right = st.columns([3, 2])
with left:
    case_panels.show_case(case)

with right:
    m1, m2 = st.columns(2)
    m1.metric("Anomaly score", f"{case['score']:.4g}")
    m2.metric("Percentile", f"{case['percentile']:.1f}")
    if case["predicted_label"] is not None:
        proba = "" if case["predicted_proba"] is None else f" (p = {case['predicted_proba']:.2f})"
        st.write(f"Model's predicted class: **{md(case['predicted_label'])}**{proba}")
    state = case_state(eng, case_id)
    st.write(f"Status: **{state.status}**" + (f", label **{md(state.label)}**" if state.label else ""))
    holder = active_claims(eng).get(case_id)
    if holder and holder != acc.name:
        st.warning(f"Claimed by {md(holder)}: you can look, but not decide, until they release it.")

    with st.form("decision", clear_on_submit=True):
        choice = st.radio("Decision", ["confirm", "dismiss", "assign_class", "note only"], horizontal=True,
                          format_func=lambda a: {"confirm": "Confirm finding", "dismiss": "Dismiss (false alarm)",
                                                 "assign_class": "Assign a class", "note only": "Note only"}[a])
        label = st.text_input("Class (for 'Assign a class'; optional for Confirm)")
        note = st.text_area("Note")
        saved = st.form_submit_button("Save")
    if saved:
        try:
            if choice == "note only":
                add_note(eng, case_id, acc.name, note)
            else:
                record_decision(eng, case_id, acc.name, choice, label=label or None, note=note or None)
            st.session_state["flash"] = "Saved."
            st.rerun()
        except MedsslError as exc:
            st.error(md(exc))
    b1, b2 = st.columns(2)
    if b1.button("Undo last decision", disabled=state.decision_event_id is None):
        undo_last(eng, case_id, acc.name)
        st.session_state["flash"] = "Undone."
        st.rerun()
    if b2.button("Release claim", disabled=holder != acc.name):
        release_case(eng, case_id, acc.name)
        st.rerun()
    if "flash" in st.session_state:
        st.success(st.session_state.pop("flash"))

    st.subheader("Earlier decisions")
    events = [e for e in case_events(eng, case_id) if e.action not in ("claim", "release")]
    if events:
        st.dataframe(pd.DataFrame([{"time (UTC)": e.created_at, "reviewer": e.reviewer, "action": e.action,
                                    "label": e.label, "note": e.note, "model": e.model_id} for e in events]),
                     hide_index=True)
    else:
        st.caption("No decision yet.")

    st.subheader("Similar reviewed cases")
    case_panels.show_similar(case_id, embeddings_path(), case_states(eng))
