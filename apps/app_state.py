"""Glue shared by the pages: the store's engine (one per URL per server) and the signed-in account."""

from __future__ import annotations

import os

import streamlit as st
from sqlalchemy import Engine

from medssl.review import Account, default_db_url, make_engine

CASE_PAGE = "views/case.py"
QUEUE_PAGE = "views/queue.py"


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    return make_engine(url)


def engine() -> Engine:
    """The review store named by ``$MEDSSL_DB`` (set by ``medssl app --db``)."""
    return _engine(os.environ.get("MEDSSL_DB") or default_db_url())


def account() -> Account | None:
    """The signed-in reviewer, or ``None``."""
    return st.session_state.get("account")


def require_account(data_science: bool = False) -> Account:
    """The signed-in reviewer; stops the page for visitors (and for clinicians on DS pages)."""
    acc = account()
    if acc is None:
        st.info("Sign in first.")
        st.stop()
    if data_science and not acc.can_fine_tune:
        st.error("This page is for data scientists and admins.")
        st.stop()
    return acc


def open_case(case_id: str) -> None:
    """Show ``case_id`` on the case page."""
    st.session_state["case_id"] = case_id
    st.switch_page(CASE_PAGE)


def client_address() -> str | None:
    """The browser's IP address as Streamlit sees it (for the login throttle), or ``None`` when unknown."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else None


def embeddings_path() -> str | None:
    """The embeddings file given to ``medssl app --embeddings``, if any."""
    return os.environ.get("MEDSSL_EMBEDDINGS") or None
