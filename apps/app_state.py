"""Glue shared by the pages: the store's engine (one per URL per server) and the signed-in account."""

from __future__ import annotations

import os

import streamlit as st
from sqlalchemy import Engine

from medssl.review import Account, ReviewError, claim_case, default_db_url, make_engine, release_case

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


VIEWING_CASE = "viewing_case"  # session_state: the case the case page shows (cleared on leaving it)
HELD_CASE = "held_case"  # session_state: the case this browser session holds a claim on


def open_case(case_id: str) -> None:
    """Show ``case_id`` on the case page, claimed for the signed-in reviewer.

    Every way of opening a case comes here (the queue, the embedding map, similar cases, deep
    links, save and next), so every one claims it. The case this session held before is released
    (:func:`leave_case`). When another reviewer holds ``case_id`` it opens read-only: the case page
    says who holds it and until when, and keeps its decision form disabled.
    """
    acc = account()
    if acc is not None:
        leave_case(keep=case_id)
        try:
            if claim_case(engine(), case_id, acc.name):
                st.session_state[HELD_CASE] = case_id
        except ReviewError:
            pass  # an unknown case: the case page says so
    st.session_state["case_id"] = case_id
    st.switch_page(CASE_PAGE)


def leave_case(keep: str | None = None) -> None:
    """Release the claim this session holds on the case it had open, unless that case is ``keep``
    (called by open_case, and at the top of the pages one goes to when leaving a case: the queue,
    the embedding map)."""
    if keep is None:
        st.session_state.pop(VIEWING_CASE, None)  # the case page's timed banner stops acting
    held = st.session_state.pop(HELD_CASE, None)
    acc = account()
    if held is None or acc is None:
        return
    if held == keep:
        st.session_state[HELD_CASE] = held
        return
    try:
        release_case(engine(), held, acc.name)
    except ReviewError:
        pass  # the case is gone from the store: nothing to release


def note_claim(case_id: str, held: bool) -> None:
    """Record whether this session holds ``case_id`` (the case page calls it after reading the store)."""
    if held:
        st.session_state[HELD_CASE] = case_id
    elif st.session_state.get(HELD_CASE) == case_id:
        del st.session_state[HELD_CASE]


def client_address() -> str | None:
    """The browser's IP address as Streamlit sees it (for the login throttle), or ``None`` when unknown."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else None


def embeddings_path() -> str | None:
    """The embeddings file given to ``medssl app --embeddings``, if any."""
    return os.environ.get("MEDSSL_EMBEDDINGS") or None


SESSION_PARAM = "session"  # ?session=TOKEN: the signed sign-in token (medssl.review.sessions)
CASE_PARAM = "case"  # ?case=CASE_ID: a deep link to one case, opened after sign-in


def browser_binding() -> str:
    """What ties a sign-in token to this browser: the client's address and User-Agent (empty where
    Streamlit knows neither, e.g. under AppTest). A token URL opened elsewhere does not sign in."""
    address = client_address() or ""
    agent = st.context.headers.get("User-Agent") or ""
    return f"{address}|{agent}" if address or agent else ""


def sign_in(acc: Account) -> None:
    """Remember ``acc`` for this browser session and put a signed, expiring token in the URL, so a
    refresh keeps the reviewer signed in (the password never goes back to the browser)."""
    from medssl.review import issue_token

    st.session_state["account"] = acc
    st.session_state["session_token"] = issue_token(engine(), acc.name, bound_to=browser_binding())
    keep_session_in_url()


def restore_session() -> Account | None:
    """The account of a valid ``?session=`` token in the URL (signed in again), else ``None``;
    an invalid, expired or revoked token is removed from the URL and a note says to sign in again."""
    from medssl.review import account_for_token

    token = st.query_params.get(SESSION_PARAM)
    if not token:
        return None
    acc = account_for_token(engine(), token, bound_to=browser_binding())
    if acc is None:
        del st.query_params[SESSION_PARAM]
        st.session_state["sign_in_note"] = "Your sign-in has expired or was ended; sign in again."
        return None
    st.session_state["account"] = acc
    st.session_state["session_token"] = token
    return acc


def keep_session_in_url() -> None:
    """Put this session's token back into the URL (switching pages clears the query parameters)."""
    token = st.session_state.get("session_token")
    if token and st.query_params.get(SESSION_PARAM) != token:
        st.query_params[SESSION_PARAM] = token


def end_session() -> None:
    """Revoke this browser's sign-in token and clear it from the URL (called by the sign-out page)."""
    from medssl.review import revoke_token

    token = st.session_state.get("session_token") or st.query_params.get(SESSION_PARAM)
    if token:
        revoke_token(engine(), token, bound_to=browser_binding())
    st.query_params.clear()


def take_deep_link() -> str | None:
    """The case of a ``?case=`` link, remembered across the sign-in; returned once signed in
    (and then forgotten), ``None`` otherwise."""
    linked = st.query_params.get(CASE_PARAM)
    if linked:
        st.session_state["deep_link_case"] = linked
    if account() is None or "deep_link_case" not in st.session_state:
        return None
    if CASE_PARAM in st.query_params:
        del st.query_params[CASE_PARAM]
    return st.session_state.pop("deep_link_case")
