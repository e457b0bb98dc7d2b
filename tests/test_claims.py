"""Claim integrity in the review store (issue 16), on SQLite and on a real PostgreSQL server
(tests/pg_server.py; skipped where there is none):

- only the claim holder can decide or undo; with no holder the call takes the claim itself;
- a decision releases the claim (a ``release`` event); an undo keeps or takes it;
- a decision over another reviewer's standing decision needs ``override=True``; both stay;
- ``release_claims`` (sign-out) releases every claim of a reviewer; expired claims count nowhere;
- of two reviewers deciding one case at once, exactly one wins;
- ``next_open_case`` (save and next) walks the queue order.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update

from medssl.review import (
    ClaimError, OverrideError, ReviewError, active_claims, active_claims_detail, case_events, case_state, claim_case,
    import_scores, list_queue, make_engine, next_open_case, record_decision, release_claims, undo_last,
)
from medssl.review.models import Claim, utcnow
from review_scores import build_real_scores

_DB_NUMBER = itertools.count()


@pytest.fixture(scope="module")
def scores(shared_data: Path, tmp_path_factory) -> Path:
    return build_real_scores(shared_data, tmp_path_factory.mktemp("data"), n_cases=20, flag_top=6)


@pytest.fixture(scope="module")
def pg(pg_server):
    """The session's server (tests/conftest.py), or the reason there is none: the postgresql cases skip."""
    return pg_server


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path, scores: Path) -> str:
    """A fresh store with the scores imported."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'review.db'}"
    else:
        pg = request.getfixturevalue("pg")
        if isinstance(pg, str):
            pytest.skip(pg)
        db = f"claims_{next(_DB_NUMBER)}"
        admin = create_engine(pg.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {db}"))
        admin.dispose()
        url = pg.url(db=db)
    engine = make_engine(url)
    import_scores(engine, scores)
    engine.dispose()
    return url


def _actions(engine, case_id: str) -> list[tuple[str, str]]:
    return [(e.action, e.reviewer) for e in case_events(engine, case_id)]


def test_only_the_holder_can_decide(url: str) -> None:
    engine = make_engine(url)
    case_id = list_queue(engine).rows["case_id"][0]
    assert claim_case(engine, case_id, "dr_lee")
    with pytest.raises(ClaimError, match=r"claimed by dr_lee until \d\d:\d\d UTC \((29|30) min left\): only they can decide"):
        record_decision(engine, case_id, "dr_kim", "confirm")
    assert _actions(engine, case_id) == [("claim", "dr_lee")]


def test_only_the_holder_can_undo(url: str) -> None:
    engine = make_engine(url)
    case_id = list_queue(engine).rows["case_id"][0]
    record_decision(engine, case_id, "dr_lee", "assign_class", label="1")
    assert claim_case(engine, case_id, "dr_lee")  # dr_lee works on it again
    with pytest.raises(ClaimError, match="claimed by dr_lee until .* only they can undo"):
        undo_last(engine, case_id, "dr_kim")
    assert case_state(engine, case_id).label == "1"  # the refused undo wrote nothing
    undo_last(engine, case_id, "dr_lee")
    assert case_state(engine, case_id).status == "open"
    assert _actions(engine, case_id) == [("assign_class", "dr_lee"), ("claim", "dr_lee"), ("undo", "dr_lee")]


def test_a_decision_releases_the_claim_and_an_undo_takes_it(url: str) -> None:
    engine = make_engine(url)
    a, b = list_queue(engine).rows["case_id"][:2]
    assert claim_case(engine, a, "dr_lee")
    record_decision(engine, a, "dr_lee", "confirm")
    assert a not in active_claims(engine)
    assert claim_case(engine, a, "dr_kim")  # another reviewer can claim it now
    # nobody holds b: a script's decision goes through and leaves no claim behind
    record_decision(engine, b, "dr_kim", "dismiss")
    assert b not in active_claims(engine) and _actions(engine, b) == [("dismiss", "dr_kim")]
    # an undo with nobody holding the case takes the claim: the reviewer is working on it (an undo of
    # dr_kim's decision: confirmed, see test_undoing_another_reviewers_decision_asks_first_and_keeps_both)
    undo_last(engine, b, "dr_lee", override=True)
    assert active_claims(engine)[b] == "dr_lee"
    assert _actions(engine, b) == [("dismiss", "dr_kim"), ("claim", "dr_lee"), ("undo", "dr_lee")]
    with pytest.raises(ClaimError, match="claimed by dr_lee"):
        record_decision(engine, b, "dr_kim", "confirm")


def test_deciding_over_another_reviewers_decision_asks_first_and_keeps_both(url: str) -> None:
    engine = make_engine(url)
    case_id = list_queue(engine).rows["case_id"][0]
    first = record_decision(engine, case_id, "dr_lee", "assign_class", label="1")
    record_decision(engine, case_id, "dr_lee", "assign_class", label="0")  # one's own: no question
    with pytest.raises(OverrideError, match=r"dr_lee already decided case .*: labelled \(0\) at \d{4}-\d\d-\d\d \d\d:\d\d UTC") as err:
        record_decision(engine, case_id, "dr_kim", "dismiss")
    assert (err.value.decided_by, err.value.status, err.value.label) == ("dr_lee", "labelled", "0")
    assert len(case_events(engine, case_id)) == 2  # refused: nothing written
    mine = record_decision(engine, case_id, "dr_kim", "dismiss", override=True)
    events = case_events(engine, case_id)
    assert [(e.action, e.reviewer, e.label) for e in events] == [
        ("assign_class", "dr_lee", "1"), ("assign_class", "dr_lee", "0"), ("dismiss", "dr_kim", None)]
    assert events[0].id == first and events[-1].id == mine
    assert (case_state(engine, case_id).status, case_state(engine, case_id).decided_by) == ("dismissed", "dr_kim")


def test_undoing_another_reviewers_decision_asks_first_and_keeps_both(url: str) -> None:
    engine = make_engine(url)
    case_id = list_queue(engine).rows["case_id"][0]
    theirs = record_decision(engine, case_id, "dr_lee", "assign_class", label="1")
    with pytest.raises(OverrideError, match=r"dr_lee already decided case .*: labelled \(1\) at .* UTC; to undo it, "
                                            r"confirm the override") as err:
        undo_last(engine, case_id, "dr_kim")
    assert err.value.undo and [e.action for e in case_events(engine, case_id)] == ["assign_class"]  # nothing written
    undo_last(engine, case_id, "dr_kim", override=True)
    events = case_events(engine, case_id)
    assert [(e.action, e.reviewer, e.ref_event_id) for e in events if e.action != "claim"] == [
        ("assign_class", "dr_lee", None), ("undo", "dr_kim", theirs)]
    assert case_state(engine, case_id).status == "open"
    mine = record_decision(engine, case_id, "dr_kim", "dismiss")  # one's own decision: undone without a question
    assert undo_last(engine, case_id, "dr_kim") > mine


def test_sign_out_releases_every_claim_and_expired_claims_count_nowhere(url: str) -> None:
    engine = make_engine(url)
    a, b, c, d = list_queue(engine).rows["case_id"][:4]
    for case_id in (a, b, c):
        assert claim_case(engine, case_id, "dr_lee")
    assert claim_case(engine, d, "dr_kim")
    with engine.begin() as conn:  # c's claim ran out ten minutes ago
        conn.execute(update(Claim).where(Claim.case_id == c).values(expires_at=utcnow() - dt.timedelta(minutes=10)))
    detail = active_claims_detail(engine)
    assert set(detail) == {a, b, d} and detail[a][0] == "dr_lee"
    assert dt.timedelta(minutes=29) < detail[a][1] - utcnow() <= dt.timedelta(minutes=30)
    record_decision(engine, c, "dr_kim", "confirm")  # an expired claim stops nobody
    assert release_claims(engine, "dr_lee") == 2
    assert active_claims(engine) == {d: "dr_kim"}
    assert [x for x in _actions(engine, a) if x[0] == "release"] == [("release", "dr_lee")]
    assert _actions(engine, c) == [("claim", "dr_lee"), ("confirm", "dr_kim")]  # no release for the expired one
    assert release_claims(engine, "dr_lee") == 0
    assert claim_case(engine, a, "dr_kim")
    # a claim made for 0 minutes is over at once: shown nowhere, taken over by the next claimant
    assert claim_case(engine, b, "dr_kim", minutes=0) and b not in active_claims_detail(engine)
    assert claim_case(engine, b, "dr_lee")


def test_two_reviewers_deciding_at_once_exactly_one_wins(url: str) -> None:
    """Eight reviewers, each with their own engine (one app session each), decide one open case
    at the same moment: one decision stands, the other seven are asked to confirm an override."""
    case_id = list_queue(make_engine(url)).rows["case_id"][0]
    barrier = threading.Barrier(8)
    won: list[str] = []
    refused: list[Exception] = []

    def worker(i: int) -> None:
        eng = make_engine(url)
        barrier.wait()
        try:
            record_decision(eng, case_id, f"reviewer{i}", "confirm")
            won.append(f"reviewer{i}")
        except ReviewError as exc:
            refused.append(exc)
        eng.dispose()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7 and all(isinstance(e, OverrideError) for e in refused)
    engine = make_engine(url)
    assert [e.reviewer for e in case_events(engine, case_id)] == won
    assert case_state(engine, case_id).decided_by == won[0]


def test_next_open_case_follows_the_queue_and_skips_decided_and_claimed(url: str) -> None:
    engine = make_engine(url)
    order = list_queue(engine).rows["case_id"].tolist()
    assert len(order) == 6
    record_decision(engine, order[1], "dr_kim", "confirm")
    assert claim_case(engine, order[2], "dr_kim")
    assert claim_case(engine, order[3], "dr_lee")
    assert next_open_case(engine, order[0]) == order[4]  # 1 decided, 2 and 3 claimed
    assert next_open_case(engine, order[0], reviewer="dr_lee") == order[3]  # one's own claim
    assert next_open_case(engine, order[5]) == order[0]  # wraps around to the top
    assert next_open_case(engine, "not-in-the-queue") == order[0]
    for case_id in (order[0], order[4], order[5]):
        record_decision(engine, case_id, "dr_kim", "dismiss")
    assert next_open_case(engine, order[4]) is None
    assert next_open_case(engine, order[4], domain="no-such-domain") is None


def test_the_apps_form_needs_a_held_claim_and_undo_a_named_decision(url: str) -> None:
    """What a stale page may send: a second Save after the first decision released the claim, a
    second Undo after the first one. Both are refused and write nothing."""
    engine = make_engine(url)
    case_id = list_queue(engine).rows["case_id"][0]
    assert claim_case(engine, case_id, "dr_lee")
    first = record_decision(engine, case_id, "dr_lee", "confirm", require_claim=True)
    with pytest.raises(ClaimError, match="you no longer hold case .*claim it again"):
        record_decision(engine, case_id, "dr_lee", "confirm", require_claim=True)
    assert claim_case(engine, case_id, "dr_lee")
    second = record_decision(engine, case_id, "dr_lee", "assign_class", label="1", require_claim=True)
    assert claim_case(engine, case_id, "dr_lee")
    undo_last(engine, case_id, "dr_lee", decision_id=second)
    with pytest.raises(ReviewError, match="already undone or replaced"):
        undo_last(engine, case_id, "dr_lee", decision_id=second)  # the same click again
    state = case_state(engine, case_id)
    assert (state.status, state.decision_event_id) == ("confirmed", first)
    assert [a for a, _ in _actions(engine, case_id)] == [
        "claim", "confirm", "release", "claim", "assign_class", "release", "claim", "undo"]

