"""Sign out: release every case the reviewer holds, forget the account of this browser session."""

import streamlit as st

from app_state import account, end_session, engine
from medssl.review import release_claims

if account() is not None:
    release_claims(engine(), account().name)  # every claim of this reviewer, with a release event each
end_session()  # revoke the sign-in token and clear it from the URL

st.session_state.clear()
st.rerun()
