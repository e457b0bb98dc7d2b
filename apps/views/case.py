"""One case: the data by domain, its score, who holds it, the decision form, earlier decisions,
similar cases.

Only the reviewer who holds the case's claim may decide or undo (medssl.review.claims): the form
and Undo are disabled for everyone else, with the reason. A decision over another reviewer's
standing decision asks first. "Save and next" opens the next open, unclaimed case of the queue.
"""

import pandas as pd
import streamlit as st

from app_state import VIEWING_CASE, embeddings_path, engine, note_claim, open_case, require_account
from medssl.errors import MedsslError
from medssl.review import (
    CLAIM_MINUTES, OverrideError, ReviewError, add_note, case_claim, case_events, case_state, case_states, claim_case,
    claim_until, get_case, next_open_case, record_decision, release_case, undo_last,
)
import case_panels
from plain_text import md

# keyboard shortcuts (Streamlit shows them on the buttons; the help text says them too). Not
# Ctrl+Enter: with it on Save, pressing it in the note field (headless Chromium) stored "confirm" with
# no note, though Dismiss was chosen and a note typed; Alt+S in the same steps stored both
SAVE_KEYS, NEXT_KEYS, UNDO_KEYS = "Alt+S", "Alt+N", "Alt+U"

acc = require_account()
eng = engine()
case_id = st.session_state.get("case_id")
if not case_id:
    st.info("Open a case from the review queue.")
    st.stop()
try:
    case = get_case(eng, case_id)
except ReviewError as exc:
    st.error(md(exc))
    st.stop()

st.session_state[VIEWING_CASE] = case_id  # leave_case() clears it: the timed banner below then stops
claim = case_claim(eng, case_id)  # (reviewer, expires_at UTC) or None
mine = claim is not None and claim[0] == acc.name
note_claim(case_id, mine)

# every value from data goes through md() (plain_text.py): shown as its characters, never as Markdown
st.title(f"Case {md(case_id)}")
st.caption(f"patient {md(case['patient_id'])} · {md(case['domain'])} · model {md(case['model_id'])}")
left, right = st.columns([3, 2])
with left:
    case_panels.show_case(case)

with right:
    m1, m2 = st.columns(2)
    m1.metric("Anomaly score", f"{case['score']:.4g}")
    m2.metric("Percentile", f"{case['percentile']:.1f}")
    if case["predicted_label"] is not None:
        proba = "" if case["predicted_proba"] is None else f" (p = {case['predicted_proba']:.2f})"
        st.write(f"Model's predicted class: **{md(case['predicted_label'])}**{proba}")
    case_panels.show_explanation(case)
    state = case_state(eng, case_id)
    st.write(f"Status: **{state.status}**" + (f", label **{md(state.label)}**" if state.label else ""))

    @st.fragment(run_every=30)
    def claim_banner() -> None:
        """Who holds the case and until when, redrawn every 30 s; the whole page reruns (form
        enabled or disabled anew) when the holder changed since it was drawn (a claim ran out)."""
        if st.session_state.get(VIEWING_CASE) != case_id:
            return  # a timer left over from a page the reviewer has left: never rerun the page they are on
        now = case_claim(eng, case_id)
        if (now[0] if now else None) != (claim[0] if claim else None):
            st.rerun()
        if now is not None and now[0] == acc.name:
            st.info(f"You hold this case {claim_until(now[1])}.", icon=":material/lock:")
        elif now is not None:
            st.warning(f"Claimed by {md(now[0])} {claim_until(now[1])}: you can look, but not decide or undo, "
                       "until they release it or the claim runs out.", icon=":material/lock_person:")

    claim_banner()
    if mine:
        why_not = None
    elif claim is not None:
        why_not = f"Deciding and undoing are disabled: {md(claim[0])} holds this case."
    else:
        why_not = ("Deciding and undoing are disabled: nobody holds this case (a decision releases the claim; "
                   f"a claim runs out after {CLAIM_MINUTES} min). Claim it to work on it.")
        if st.button("Claim this case", type="primary"):
            if claim_case(eng, case_id, acc.name):
                note_claim(case_id, True)
            else:
                st.session_state["flash_warning"] = "Another reviewer claimed it a moment ago."
            st.rerun()

    # a decision over another reviewer's standing decision: say whose, and ask first
    theirs = state.decided_by is not None and state.decided_by != acc.name
    if theirs:
        what = state.status + (f" ({md(state.label)})" if state.label else "")
        st.warning(f"{md(state.decided_by)} decided **{what}** at {state.decided_at:%Y-%m-%d %H:%M} UTC — "
                   "record yours over it? Both decisions stay in the audit trail.")

    with st.form("decision", clear_on_submit=True):
        choice = st.radio("Decision", ["confirm", "dismiss", "assign_class", "note only"], horizontal=True,
                          disabled=not mine,
                          format_func=lambda a: {"confirm": "Confirm finding", "dismiss": "Dismiss (false alarm)",
                                                 "assign_class": "Assign a class", "note only": "Note only"}[a])
        label = st.text_input("Class (for 'Assign a class'; optional for Confirm)", disabled=not mine)
        note = st.text_area("Note", disabled=not mine)
        override = (st.checkbox(f"Record my decision over {md(state.decided_by)}'s", disabled=not mine)
                    if theirs else False)
        # one button a row: the narrow column would cut the labels next to their shortcut hints
        saved = st.form_submit_button("Save", disabled=not mine, shortcut=SAVE_KEYS, width="stretch",
                                      help=f"Shortcut: {SAVE_KEYS}")
        save_next = st.form_submit_button("Save and next", disabled=not mine, shortcut=NEXT_KEYS, width="stretch",
                                          help=f"Save, then open the next open unclaimed case of the queue. "
                                               f"Shortcut: {NEXT_KEYS}")
    if why_not:
        st.caption(why_not)
    if saved or save_next:
        try:
            if choice == "note only":
                add_note(eng, case_id, acc.name, note)
            else:
                record_decision(eng, case_id, acc.name, choice, label=label or None, note=note or None,
                                override=bool(override), require_claim=True)
                note_claim(case_id, False)  # the decision released the claim
            if save_next:
                domain = st.session_state.get("queue_filters", {}).get("domain")
                nxt = next_open_case(eng, case_id, domain=None if domain in (None, "all") else domain,
                                     reviewer=acc.name)
                if nxt is not None:
                    st.session_state["flash"] = f"Saved case {case_id}."
                    open_case(nxt)
                st.session_state["flash"] = "Saved. No open, unclaimed case is left in this queue."
            else:
                st.session_state["flash"] = "Saved."
            st.rerun()
        except OverrideError as exc:  # decided a moment ago, or the box was not ticked
            what = exc.status + (f" ({exc.label})" if exc.label else "")
            st.error(md(f"{exc.decided_by} already decided this case: {what} at {exc.decided_at:%Y-%m-%d %H:%M} UTC. "
                        f"To record yours over it, tick 'Record my decision over {exc.decided_by}'s' and save again "
                        "(both stay in the audit trail)."))
        except MedsslError as exc:
            st.error(md(exc))
    undo_help = (f"Shortcut: {UNDO_KEYS}" if mine else "Only the reviewer who holds this case can undo.")
    # undoing another reviewer's decision is an override too: it needs the same explicit confirmation
    undo_theirs = (st.checkbox(f"Undo {md(state.decided_by)}'s decision", disabled=not mine, key="undo_theirs")
                   if theirs else False)
    if st.button("Undo last decision", disabled=not mine or state.decision_event_id is None or (theirs and not undo_theirs),
                 shortcut=UNDO_KEYS, help=undo_help, width="stretch"):
        try:
            undo_last(eng, case_id, acc.name, decision_id=state.decision_event_id, override=bool(undo_theirs))
            st.session_state["flash"] = "Undone."
            st.rerun()
        except MedsslError as exc:
            st.error(md(exc))
    if st.button("Release claim", disabled=not mine, help="Let another reviewer take this case.", width="stretch"):
        release_case(eng, case_id, acc.name)
        note_claim(case_id, False)
        st.rerun()
    if "flash" in st.session_state:
        st.success(md(st.session_state.pop("flash")))
    if "flash_warning" in st.session_state:
        st.warning(st.session_state.pop("flash_warning"))

    st.subheader("Earlier decisions")
    events = [e for e in case_events(eng, case_id) if e.action not in ("claim", "release")]
    if events:
        st.dataframe(pd.DataFrame([{"time (UTC)": e.created_at, "reviewer": e.reviewer, "action": e.action,
                                    "label": e.label, "note": e.note, "model": e.model_id} for e in events]),
                     hide_index=True)
    else:
        st.caption("No decision yet.")

    st.subheader("Similar reviewed cases")
    case_panels.show_similar(case_id, embeddings_path(), case_states(eng))
