"""Concurrent undos on one case, shared by the SQLite (test_audit_trail.py) and PostgreSQL
(test_review_postgres.py) tests: each acknowledged undo must undo a different decision."""

from __future__ import annotations

import threading
from typing import Callable

from sqlalchemy import Engine, select

from medssl.review import ReviewError, case_state, record_decision, release_case, undo_last
from medssl.review.models import ReviewEvent


def race_undos(make: Callable[[], Engine], case_id: str, n_decisions: int, n_undoers: int) -> tuple[list[int], int]:
    """Record ``n_decisions`` decisions on ``case_id``, then let ``n_undoers`` threads (one engine,
    i.e. one connection pool, each: separate app sessions) call ``undo_last`` at once.

    The first undo takes dr_kim the claim (issue 16: an undo keeps or takes it); it is released
    at the end. Returns the ids of the acknowledged undo events and the number refused ("no decision to undo").
    """
    engine = make()
    for i in range(n_decisions):
        record_decision(engine, case_id, "dr_lee", "assign_class", label=f"class-{i}")
    engines = [make() for _ in range(n_undoers)]
    barrier = threading.Barrier(n_undoers)
    acknowledged: list[int] = []
    refused: list[str] = []

    def worker(eng: Engine) -> None:
        barrier.wait()
        try:
            acknowledged.append(undo_last(eng, case_id, "dr_kim", override=True))  # dr_lee's decisions
        except ReviewError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=worker, args=(eng,)) for eng in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for eng in engines:
        eng.dispose()
    release_case(engine, case_id, "dr_kim")  # the undos took dr_kim the claim; dr_lee decides next round
    assert all("no decision to undo" in r for r in refused), refused
    return acknowledged, len(refused)


def undo_targets(engine: Engine, case_id: str) -> dict[int, int]:
    """``{undo event id: the decision it undoes}`` of ``case_id``."""
    with engine.connect() as conn:
        rows = conn.execute(select(ReviewEvent.id, ReviewEvent.ref_event_id)
                            .where(ReviewEvent.case_id == case_id, ReviewEvent.action == "undo")).all()
    return {r.id: r.ref_event_id for r in rows}


def check_undo_race(make: Callable[[], Engine], case_id: str, rounds: int = 3) -> None:
    """Each round: 4 decisions, 6 undoers -> exactly 4 acknowledged, each undoing a distinct
    decision, 2 refused, and the case open again."""
    engine = make()
    for _ in range(rounds):
        before = undo_targets(engine, case_id)
        acknowledged, n_refused = race_undos(make, case_id, n_decisions=4, n_undoers=6)
        new = {k: v for k, v in undo_targets(engine, case_id).items() if k not in before}
        assert sorted(new) == sorted(acknowledged)
        assert len(set(new.values())) == len(new) == 4, new
        assert n_refused == 2
        assert case_state(engine, case_id).status == "open"
