"""Review queue: flagged cases, highest anomaly score first; filter, page, claim and open."""

import pandas as pd
import streamlit as st

from app_state import engine, leave_case, open_case, require_account
from plain_text import md
from medssl.review import STATUSES, claim_case, decisions_to_labels, list_queue, queue_domains

acc = require_account()
leave_case()  # back from a case: release the claim this session held on it (app_state.leave_case)
eng = engine()
st.title("Review queue")
domains = queue_domains(eng)
if not domains:
    st.info("No scored cases yet. Start the app with `medssl app --scores SCORES_PARQUET` to fill the queue.")
    st.stop()

c1, c2, c3, c4 = st.columns(4)
domain = c1.selectbox("Domain", ["all", *domains])
status = c2.selectbox("Status", ["all", *STATUSES])
patient = c3.text_input("Patient id", help="show only this patient's cases (exact id)")
page_size = c4.selectbox("Cases per page", [10, 25, 50], index=1)
page_no = st.number_input("Page", min_value=1, value=1, step=1)
page = list_queue(eng, domain=None if domain == "all" else domain, status=None if status == "all" else status,
                  patient=patient.strip() or None, page=int(page_no), page_size=int(page_size))
st.caption(f"{page.total} flagged case(s) · page {page.page} of {page.n_pages}")
if page.rows.empty:
    st.info("No flagged case matches these filters.")
    st.stop()

header = st.columns([3, 2, 1, 1, 1, 2, 1])
for col, title in zip(header, ["Case", "Patient", "Score", "Percentile", "Status", "Claimed by", ""]):
    col.markdown(f"**{title}**")
for row in page.rows.itertuples(index=False):
    cols = st.columns([3, 2, 1, 1, 1, 2, 1])
    # values from data as plain text (plain_text.py), never Markdown
    cols[0].text(row.case_id)
    cols[1].text(row.patient_id)
    cols[2].text(f"{row.score:.3g}")
    cols[3].text(f"{row.percentile:.1f}")
    label = None if pd.isna(row.label) else str(row.label)  # a missing value may be None or NaN
    holder = None if pd.isna(row.claimed_by) else str(row.claimed_by)
    cols[4].text(row.status if label is None else f"{row.status} ({label})")
    cols[5].text(holder or "—")
    if cols[6].button("Open", key=f"open-{row.case_id}"):
        if holder in (None, acc.name) and not claim_case(eng, row.case_id, acc.name):
            st.warning(f"{md(row.case_id)} was just claimed by another reviewer; opening it read-only.")
        open_case(row.case_id)

labels = decisions_to_labels(eng)
st.download_button(f"Download decisions as labels CSV ({len(labels)} labelled cases)",
                   labels.to_csv(index=False), file_name="review_labels.csv", mime="text/csv")
