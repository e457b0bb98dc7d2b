"""Sign out: forget the account of this browser session."""

import streamlit as st

st.session_state.clear()
st.rerun()
