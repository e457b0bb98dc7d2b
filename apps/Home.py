"""medssl review app (entry point): sign-in gate and role-based navigation.

Run with ``medssl app`` (it imports scores and sets ``MEDSSL_DB``), not directly.

URL parameters: ``?session=TOKEN`` (set after sign-in, so a refresh keeps the reviewer signed in
for ``medssl.review.SESSION_HOURS``; signing out revokes it) and ``?case=CASE_ID`` (a deep link:
the case opens after sign-in).
"""

from __future__ import annotations

import streamlit as st

from app_state import account, engine, keep_session_in_url, open_case, restore_session, take_deep_link
from plain_text import md
from medssl.review import ReviewError, get_case

st.set_page_config(page_title="medssl review", page_icon=":material/fact_check:", layout="wide")

acc = account() or restore_session()
if acc is None:
    take_deep_link()  # remembers a ?case= link until the visitor has signed in
    pages = [st.Page("views/sign_in.py", title="Sign in", icon=":material/login:")]
else:
    keep_session_in_url()
    pages = [
        st.Page("views/queue.py", title="Review queue", icon=":material/list:", default=True),
        st.Page("views/case.py", title="Case", icon=":material/radiology:"),
    ]
    if acc.can_fine_tune:
        pages += [
            st.Page("views/finetune.py", title="Fine-tune", icon=":material/model_training:"),
            st.Page("views/embedding_map.py", title="Embedding map", icon=":material/scatter_plot:"),
        ]
    pages.append(st.Page("views/sign_out.py", title="Sign out", icon=":material/logout:"))
    st.sidebar.caption(f"Signed in as **{md(acc.name)}** ({acc.role.replace('_', ' ')})")

page = st.navigation(pages)
linked = take_deep_link() if acc is not None else None
if linked:
    try:
        get_case(engine(), linked)
    except ReviewError as exc:
        st.error(md(exc))
    else:
        open_case(linked)  # claims it (when free) and switches to the case page
page.run()
