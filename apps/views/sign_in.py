"""Sign-in: the only page a signed-out visitor sees."""

import streamlit as st

from app_state import engine
from medssl.review import authenticate

st.title("medssl review")
st.write("Sign in with the reviewer account your administrator created (`medssl users add`).")
with st.form("sign_in"):
    name = st.text_input("Name")
    password = st.text_input("Password", type="password")
    submitted = st.form_submit_button("Sign in")
if submitted:
    acc = authenticate(engine(), name, password)
    if acc is None:
        st.error("Wrong name or password.")
    else:
        st.session_state["account"] = acc
        st.rerun()
