"""Embedding map: every scored case in 2-D (PCA of its embedding), coloured by score or label;
select a point to open the case."""

import altair as alt
import pandas as pd
import streamlit as st

from app_state import embeddings_path, engine, leave_case, open_case, require_account
from medssl.review import case_states, list_queue
from medssl.review.embeddings import project_2d, read_embeddings

require_account(data_science=True)
leave_case()  # coming here from a case leaves it: its claim is released
eng = engine()
st.title("Embedding map")
path = embeddings_path()
if path is None:
    st.info("Start the app with `--embeddings FILE` (written by `medssl score --embeddings FILE`) to see the map.")
    st.stop()

ids, matrix = read_embeddings(path)
xy = project_2d(matrix)
cases = list_queue(eng, flagged_only=False, page_size=10**9).rows.set_index("case_id")
states = case_states(eng)
points = pd.DataFrame({"case_id": ids, "x": xy[:, 0], "y": xy[:, 1]})
points["score"] = points["case_id"].map(cases["score"])
points["flagged"] = points["case_id"].isin(list_queue(eng, page_size=10**9).rows["case_id"])
points["label"] = [states[c].label if c in states and states[c].label else "unreviewed" for c in points["case_id"]]
colour_by = st.radio("Colour by", ["anomaly score", "review label"], horizontal=True)
colour = alt.Color("score:Q", scale=alt.Scale(scheme="inferno")) if colour_by == "anomaly score" else alt.Color("label:N")
pick = alt.selection_point(fields=["case_id"], name="pick")
chart = (alt.Chart(points).mark_circle(size=60).encode(
    x=alt.X("x:Q", title="PC 1"), y=alt.Y("y:Q", title="PC 2"), color=colour,
    tooltip=["case_id", "score", "label", "flagged"]).add_params(pick))
event = st.altair_chart(chart, on_select="rerun", key="map", use_container_width=True)
chosen = [p["case_id"] for p in (event.selection.get("pick") or [])] if event else []
st.caption(f"{len(points)} cases; {int(points['flagged'].sum())} flagged. Click a point to select it.")
case_id = st.selectbox("Case", chosen or points.sort_values("score", ascending=False)["case_id"].tolist())
if st.button("Open case"):
    open_case(case_id)
