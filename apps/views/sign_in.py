"""Sign-in: the only page a signed-out visitor sees. Repeated failures are throttled per account
and per address (medssl.review.throttle): the message says when to try again. A successful sign-in
puts a signed, expiring token in the URL (app_state.sign_in), so a refresh keeps it."""

import streamlit as st

from app_state import client_address, engine, sign_in
from medssl.review import ThrottledError, authenticate

st.title("medssl review")
st.write("Sign in with the reviewer account your administrator created (`medssl users add`).")
if "sign_in_note" in st.session_state:
    st.info(st.session_state.pop("sign_in_note"))
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
        sign_in(acc)
        st.rerun()
