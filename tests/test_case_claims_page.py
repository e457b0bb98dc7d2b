"""The case page's claim panel with streamlit.testing.v1.AppTest on a real score file (issue 16):
the claim's expiry is shown (yours, another reviewer's, an expired one), the decision form is
disabled unless you hold the case, "Save and next" decides and opens the next open case (claimed),
the keyboard shortcuts are set and said in the help, and the embedding map, similar cases and
sign-out go through the claim rules. The two-browser checks are in tests/test_browser_claims.py."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import update
from streamlit.testing.v1 import AppTest

from medssl.review import active_claims, case_events, case_state, claim_case, make_engine
from medssl.review.models import Claim, utcnow
from app_text import shown
from review_app import APP, TIMEOUT, real_scores, store  # noqa: F401 (pytest fixtures)
from review_app import flagged as _flagged, signed_in as _signed_in

# the fixtures real_scores and store come from review_app (imported for pytest to find them)


def _look_at(at: AppTest, case_id: str) -> AppTest:
    """Show ``case_id`` on the case page without the app's open_case (which would claim it)."""
    at.session_state["case_id"] = case_id
    at.switch_page("views/case.py").run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> list[str]:
    return [shown(e.value) for kind in ("info", "warning", "caption", "error", "success") for e in at.get(kind)]


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_the_claims_expiry_is_shown_and_an_expired_claim_holds_nobody(store: str, real_scores: Path) -> None:
    engine = make_engine(store)
    mine, theirs, expired = _flagged(real_scores)[:3]
    assert claim_case(engine, mine, "dr_lee", minutes=12)
    assert claim_case(engine, theirs, "dr_kim")
    assert claim_case(engine, expired, "dr_kim")
    with engine.begin() as conn:  # dr_kim's claim on `expired` ended two minutes ago
        conn.execute(update(Claim).where(Claim.case_id == expired).values(expires_at=utcnow() - dt.timedelta(minutes=2)))
    at = _signed_in("dr_lee", "lee-password")

    _look_at(at, mine)
    until = next(t for t in _texts(at) if t.startswith("You hold this case"))
    assert re.fullmatch(r"You hold this case until \d\d:\d\d UTC \((11|12) min left\)\.", until), until
    assert not _button(at, "Save").disabled and not _button(at, "Release claim").disabled

    _look_at(at, theirs)
    held = next(t for t in _texts(at) if t.startswith("Claimed by"))
    assert re.match(r"Claimed by dr_kim until \d\d:\d\d UTC \((29|30) min left\): you can look, but not decide", held), held
    assert _button(at, "Save").disabled and _button(at, "Save and next").disabled
    assert _button(at, "Undo last decision").disabled and all(r.disabled for r in at.radio)
    assert "Deciding and undoing are disabled: dr_kim holds this case." in _texts(at)

    _look_at(at, expired)  # shown as free, not as dr_kim's; the form waits for a claim
    assert not any("dr_kim" in t for t in _texts(at))
    assert any(t.startswith("Deciding and undoing are disabled: nobody holds this case") for t in _texts(at))
    assert _button(at, "Save").disabled
    _button(at, "Claim this case").click().run()
    assert active_claims(engine)[expired] == "dr_lee"
    assert not _button(at, "Save").disabled
    assert [(e.action, e.reviewer) for e in case_events(engine, expired)] == [("claim", "dr_kim"), ("claim", "dr_lee")]


def test_save_and_next_decides_and_opens_the_next_open_case_claimed(store: str, real_scores: Path) -> None:
    engine = make_engine(store)
    first, second, third = _flagged(real_scores)[:3]
    assert claim_case(engine, second, "dr_kim")  # taken: save and next skips it
    at = _signed_in("dr_lee", "lee-password")
    at.button(key=f"open-{first}").click().run()
    assert [shown(t.value) for t in at.title] == [f"Case {first}"]
    at.radio[0].set_value("dismiss")
    _button(at, "Save and next").click().run()
    assert not at.exception, at.exception
    assert [shown(t.value) for t in at.title] == [f"Case {third}"]
    assert case_state(engine, first).status == "dismissed"
    claims = active_claims(engine)
    assert first not in claims and claims[third] == "dr_lee" and claims[second] == "dr_kim"
    assert f"Saved case {first}." in _texts(at)


def test_buttons_carry_their_keyboard_shortcuts(store: str, real_scores: Path) -> None:
    at = _signed_in("dr_lee", "lee-password")
    at.button(key=f"open-{_flagged(real_scores)[0]}").click().run()
    shortcuts = {b.label: (b.proto.shortcut, b.help) for b in at.button if b.proto.shortcut}
    assert shortcuts == {
        "Save": ("alt+s", "Shortcut: Alt+S"),
        "Save and next": ("alt+n", "Save, then open the next open unclaimed case of the queue. Shortcut: Alt+N"),
        "Undo last decision": ("alt+u", "Shortcut: Alt+U"),
    }


def test_the_embedding_map_claims_the_case_it_opens_and_sign_out_releases_it(store: str, real_scores: Path,
                                                                             monkeypatch) -> None:
    monkeypatch.setenv("MEDSSL_EMBEDDINGS", str(real_scores.parent / "embeddings.parquet"))
    engine = make_engine(store)
    flagged = _flagged(real_scores)
    at = _signed_in("ana", "ana-password")
    at.switch_page("views/embedding_map.py").run()
    at.selectbox[0].set_value(flagged[1])
    _button(at, "Open case").click().run()
    assert [shown(t.value) for t in at.title] == [f"Case {flagged[1]}"]
    assert active_claims(engine) == {flagged[1]: "ana"}
    at.switch_page("views/embedding_map.py").run()  # leaving the case for the map releases it
    assert active_claims(engine) == {}
    at.selectbox[0].set_value(flagged[2])
    _button(at, "Open case").click().run()
    assert active_claims(engine) == {flagged[2]: "ana"}
    at.switch_page("views/sign_out.py").run()
    assert active_claims(engine) == {}
    assert [(e.action, e.reviewer) for e in case_events(engine, flagged[2])] == [("claim", "ana"), ("release", "ana")]


def test_opening_a_similar_case_claims_it_and_releases_the_case_left(store: str, real_scores: Path,
                                                                     monkeypatch) -> None:
    from medssl.review import record_decision

    monkeypatch.setenv("MEDSSL_EMBEDDINGS", str(real_scores.parent / "embeddings.parquet"))
    engine = make_engine(store)
    reviewed, start = _flagged(real_scores)[:2]
    record_decision(engine, reviewed, "ana", "dismiss")  # "similar reviewed cases" lists decided cases only
    at = _signed_in("dr_lee", "lee-password")
    at.button(key=f"open-{start}").click().run()
    assert active_claims(engine) == {start: "dr_lee"}
    at.button(key=f"near-{reviewed}").click().run()
    assert not at.exception, at.exception
    assert [shown(t.value) for t in at.title] == [f"Case {reviewed}"]
    assert active_claims(engine) == {reviewed: "dr_lee"}
    assert [(e.action, e.reviewer) for e in case_events(engine, start)][-1] == ("release", "dr_lee")


def test_undoing_another_reviewers_decision_needs_the_confirm_box(store: str, real_scores: Path) -> None:
    engine = make_engine(store)
    case_id = _flagged(real_scores)[0]
    from medssl.review import record_decision

    theirs = record_decision(engine, case_id, "ana", "assign_class", label="1")
    at = _signed_in("dr_lee", "lee-password")
    assert claim_case(engine, case_id, "dr_lee")
    _look_at(at, case_id)
    assert _button(at, "Undo last decision").disabled  # ana's decision: not without the box
    box = next(c for c in at.checkbox if c.label == "Undo ana's decision")
    box.check().run()
    _button(at, "Undo last decision").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    undo = [e for e in case_events(engine, case_id) if e.action == "undo"]
    assert [(e.reviewer, e.ref_event_id) for e in undo] == [("dr_lee", theirs)]
    assert case_state(engine, case_id).status == "open"
