"""medssl review app (entry point): sign-in gate and role-based navigation.

Run with ``medssl app`` (it imports scores and sets ``MEDSSL_DB``), not directly.
"""

from __future__ import annotations

import streamlit as st

from app_state import account
from plain_text import md

st.set_page_config(page_title="medssl review", page_icon=":material/fact_check:", layout="wide")

acc = account()
if acc is None:
    pages = [st.Page("views/sign_in.py", title="Sign in", icon=":material/login:")]
else:
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

st.navigation(pages).run()
