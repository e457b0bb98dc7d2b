"""Sign-in: the only page a signed-out visitor sees. Repeated failures are throttled per account
and per address (medssl.review.throttle): the message says when to try again."""

import streamlit as st

from app_state import client_address, engine
from medssl.review import ThrottledError, authenticate

st.title("medssl review")
st.write("Sign in with the reviewer account your administrator created (`medssl users add`).")
with st.form("sign_in"):
    name = st.text_input("Name")
    password = st.text_input("Password", type="password")
    submitted = st.form_submit_button("Sign in")
if submitted:
    try:
        acc = authenticate(engine(), name, password, address=client_address())
    except ThrottledError as exc:
        st.error(str(exc))
        st.stop()
    if acc is None:
        st.error("Wrong name or password.")
    else:
        st.session_state["account"] = acc
        st.rerun()
