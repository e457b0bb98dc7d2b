"""Review queue: flagged cases, most anomalous first within their domain; filter, page, open.

The filters (domain, status, patient, page size, page) are kept in ``st.session_state["queue_filters"]``
(a plain key, which Streamlit does not delete when the case page runs) and handed back to the
widgets, so they are still set after opening a case and coming back.
"""

import pandas as pd
import streamlit as st

from app_state import embeddings_path, engine, leave_case, open_case, require_account
from case_panels import embeddings
from medssl.errors import DataError
from medssl.review import (
    STATUSES, ReviewError, decisions_parquet, decisions_table, decisions_to_labels, domain_counts, list_queue,
    rerank_cases, row_text,
)
from medssl.review.label_requests import label_next_queue
from plain_text import md

FILTERS = "queue_filters"
DEFAULTS = {"domain": "all", "status": "all", "patient": "", "page_size": 25, "page": 1, "rerank": False,
            "label_next": False}

require_account()
leave_case()  # back from a case: release the claim this session held on it (app_state.leave_case)
eng = engine()
st.title("Review queue")
counts = domain_counts(eng)
if not counts:
    st.info("No scored cases yet. Start the app with `medssl app --scores SCORES_PARQUET` to fill the queue.")
    st.stop()

saved = {**DEFAULTS, **st.session_state.get(FILTERS, {})}
for name, value in saved.items():  # widget state is dropped while another page runs: hand it back
    if f"queue_{name}" not in st.session_state:
        st.session_state[f"queue_{name}"] = value
domains = ["all", *counts]
if st.session_state["queue_domain"] not in domains:
    st.session_state["queue_domain"] = "all"
c1, c2, c3, c4, c5 = st.columns([2, 2, 2, 1, 1])
domain = c1.selectbox("Domain", domains, key="queue_domain",
                      format_func=lambda d: f"all ({sum(counts.values())})" if d == "all" else f"{d} ({counts[d]})",
                      help="one queue per domain; 'all' ranks cases by their percentile within their own domain")
status = c2.selectbox("Status", ["all", *STATUSES], key="queue_status")
patient = c3.text_input("Patient id", key="queue_patient", help="show only this patient's cases (exact id)")
page_size = c4.selectbox("Cases per page", [10, 25, 50], key="queue_page_size")
page_no = c5.number_input("Page", min_value=1, step=1, key="queue_page")
emb_path = embeddings_path()
rerank_help = ("confirmed cases pull the cases that look like them up the queue, dismissed ones (false alarms) "
               "push their look-alikes down; unflagged cases can enter")
t1, t2 = st.columns(2)
rerank = t1.toggle("Re-rank by decisions", key="queue_rerank", disabled=emb_path is None,
                   help=rerank_help + (". Needs `medssl app --embeddings`" if emb_path is None else ""))
label_next = t2.toggle("Label next", key="queue_label_next",
                       help="only the cases a data scientist asked to have labelled first (Fine-tune page, "
                       "'Label next'), still undecided, in the order asked; flagged or not")
st.session_state[FILTERS] = {"domain": domain, "status": status, "patient": patient, "page_size": page_size,
                             "page": int(page_no), "rerank": rerank, "label_next": label_next}
reranked = None
try:
    result = rerank_cases(eng, *embeddings(emb_path)) if rerank and emb_path is not None and not label_next else None
except (DataError, ReviewError) as exc:  # a foreign or damaged embeddings file: say so, keep the plain queue
    st.error(f"Cannot re-rank: {md(exc)}")
    result = None
if result is not None:
    reranked = result.table.set_index("case_id")["reranked"]
    reasons = dict(zip(result.table["case_id"], result.table["reason"]))
    st.caption(f"Re-ranked by {result.n_confirmed} confirmed and {result.n_dismissed} dismissed decision(s) "
               "(medssl.review.rerank): the Re-ranked column is the domain percentile / 100, plus up to 1 for a "
               "case like a confirmed one, minus up to 1 for a case like a dismissed one.")
if label_next:
    page = label_next_queue(eng, domain=None if domain == "all" else domain, patient=patient.strip() or None,
                            page=int(page_no), page_size=int(page_size))
    what = "case(s) to label next, still undecided, in the order asked (the status filter does not apply)"
else:
    page = list_queue(eng, domain=None if domain == "all" else domain, status=None if status == "all" else status,
                      patient=patient.strip() or None, page=int(page_no), page_size=int(page_size), reranked=reranked)
    what = "case(s), flagged or not, re-ranked" if reranked is not None else "flagged case(s)"
st.caption(f"{page.total} {what} · page {page.page} of {page.n_pages}")
if not page.rows.empty:  # which model's scores and predictions these are (a rescore changes it)
    models = page.rows["model_id"].astype(str).value_counts()
    st.caption("Scored by model " + ", ".join(f"{md(m[:12])} ({n} on this page)" for m, n in models.items()))

if page.rows.empty:
    st.info("No case is waiting to be labelled: a data scientist sends some from the Fine-tune page ('Label next')."
            if label_next else "No flagged case matches these filters.")
else:
    widths = [1.8, 1.8, 1.3, 1.3, 0.9, 0.9, 1.1, 1.5, 2.0, 1.4]
    titles = ["Case", "Patient", "Domain", "Predicted", "Prob.", "Score", "Pct in domain", "Status",
              "Claimed by", ""]
    if reranked is not None:
        widths[6:6] = [1.0, 2.2]
        titles[6:6] = ["Re-ranked", "Why re-ranked"]
    if label_next:  # who asked for the label, before who holds the case now
        widths[-2:-2] = [1.4]
        titles[-2:-2] = ["Requested by"]
    header = st.columns(widths)
    for col, title in zip(header, titles):
        col.markdown(f"**{title}**")
    for row in page.rows.itertuples(index=False):
        text = row_text(row)  # None and NaN read the same (medssl.review.queue_rows)
        cols = st.columns(widths)
        # values from data as plain text (plain_text.py), never Markdown
        values = [text.case_id, text.patient_id, text.domain, text.predicted, text.probability, text.score,
                  text.percentile, text.status, text.claimed]
        if reranked is not None:
            values[6:6] = ["" if pd.isna(row.reranked) else f"{row.reranked:.3f}", reasons.get(text.case_id, "")]
        if label_next:
            values[-1:-1] = [str(row.requested_by)]
        for col, value in zip(cols, values):
            col.text(value)
        if cols[-1].button("Open", key=f"open-{text.case_id}"):
            open_case(text.case_id)  # claims it when free; else the case page opens read-only and says who holds it

st.subheader("Export")
labels = decisions_to_labels(eng)
decisions = decisions_table(eng)
d1, d2, d3 = st.columns(3)
d1.download_button(f"Decisions as CSV ({len(decisions)})", decisions.to_csv(index=False),
                   file_name="review_decisions.csv", mime="text/csv",
                   help="every decision: case, patient, domain, decision, label, reviewer, time (UTC), model, "
                   "note, and whether it stands, was undone or was overridden")
d2.download_button(f"Decisions as Parquet ({len(decisions)})", decisions_parquet(decisions), file_name="review_decisions.parquet",
                   mime="application/vnd.apache.parquet")
d3.download_button(f"Download decisions as labels CSV ({len(labels)} labelled cases)",
                   labels.to_csv(index=False), file_name="review_labels.csv", mime="text/csv",
                   help="case_id,label of every standing labelled decision: the input of `medssl finetune --labels`")
