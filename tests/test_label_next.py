""""Label next" (issue 18): which undecided cases are picked (uncertainty, then diversity over the
embeddings), that decided cases are never picked, and that labelling requests are idempotent and
leave every review decision as it was. Planted score and embeddings files in a real SQLite store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medssl.review import ReviewError, case_events, case_state, import_scores, make_engine, record_decision
from medssl.review.label_next import farthest_first, label_next, pick_label_next, uncertainty
from medssl.review.label_requests import label_next_queue, label_requests, request_labels

# planted cases: cluster "a" (4 cases) and "b" (4) hold the uncertain ones (p near 0.5), cluster
# "c" (4) the sure ones (p = 0.99); "a" is a little more uncertain than "b"
CENTRES = {"a": [0.0, 0.0], "b": [10.0, 0.0], "c": [0.0, 10.0]}
PROBA = {"a": [0.50, 0.51, 0.52, 0.53], "b": [0.55, 0.56, 0.57, 0.58], "c": [0.99] * 4}


def _planted(tmp_path: Path, with_proba: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    ids, emb, proba = [], [], []
    for name, centre in CENTRES.items():
        for i, p in enumerate(PROBA[name]):
            ids.append(f"{name}{i}")
            emb.append(np.asarray(centre) + rng.normal(0, 0.1, 2))
            proba.append(p)
    n = len(ids)
    scores = pd.DataFrame({
        "case_id": ids, "patient_id": [f"p-{c}" for c in ids], "domain": "imaging",
        "anomaly_score": np.linspace(1, 2, n), "anomaly_percentile": np.linspace(1, 100, n), "flagged": [True] * n,
        "predicted_label": ["pneumonia"] * n if with_proba else [None] * n,
        "predicted_proba": proba if with_proba else [np.nan] * n, "model_id": "m1",
        "scored_at": dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc).isoformat(),
    })
    (tmp_path / "data").mkdir(exist_ok=True)
    scores.to_parquet(tmp_path / "data" / "scores.parquet", index=False)
    pd.DataFrame({"case_id": ids, "embedding": [e.astype(np.float32) for e in emb]}).to_parquet(
        tmp_path / "data" / "embeddings.parquet", index=False)
    return tmp_path / "data" / "scores.parquet", tmp_path / "data" / "embeddings.parquet"


@pytest.fixture()
def store(tmp_path: Path, new_review_db):
    """The planted cases in a review store (SQLite, and PostgreSQL where the tests have a server) and
    their embeddings ``(case_ids, X)``."""
    scores, emb = _planted(tmp_path)
    engine = make_engine(new_review_db("review"))
    import_scores(engine, scores, tmp_path / "data")
    from medssl.review.embeddings import read_embeddings

    return engine, read_embeddings(emb)


def test_uncertainty_is_one_at_a_coin_toss_and_zero_when_sure() -> None:
    got = uncertainty(np.array([0.5, 1.0, 0.75, 1 / 3, np.nan]), np.array([2, 2, 2, 3, 2]))
    assert got[:4] == pytest.approx([1.0, 0.0, 0.5, 1.0])
    assert np.isnan(got[4])


def test_farthest_first_spreads_over_the_clusters() -> None:
    points = np.array([[0, 0], [0.1, 0], [5, 0], [5.1, 0], [0, 5]], dtype=float)
    picked, gaps = farthest_first(points, 3)
    assert picked[0] == 0 and sorted(picked) == [0, 2, 4] or sorted(picked) == [0, 3, 4]
    assert np.isinf(gaps[0]) and gaps[1] > 4
    # existing centres (decided cases) count: next to (0, 0) the first pick is far from it
    picked, _ = farthest_first(points, 1, centers=np.array([[0.0, 0.0]]))
    assert picked[0] in (2, 3)


def test_uncertain_pool_then_one_pick_per_cluster(store) -> None:
    engine, emb = store
    picks = label_next(engine, 2, emb, pool_factor=4)
    # the pool is the 8 most uncertain cases (clusters a and b); uncertainty alone would take a0 and a1,
    # diversity takes one of each cluster: the most uncertain (a0), then the farthest of the pool (b)
    assert picks["case_id"].tolist()[0] == "a0"
    assert picks["case_id"].str[0].tolist() == ["a", "b"]
    assert picks["rank"].tolist() == [1, 2]
    assert picks["uncertainty"].iloc[0] == pytest.approx(1.0)
    # the sure cluster c is never in the pool
    assert not picks["case_id"].str.startswith("c").any()
    # without embeddings: uncertainty alone
    assert label_next(engine, 2, None)["case_id"].tolist() == ["a0", "a1"]


def test_decided_cases_are_never_picked_and_push_the_picks_away(store) -> None:
    engine, emb = store
    record_decision(engine, "a0", "dr_lee", "assign_class", label="normal")
    record_decision(engine, "b0", "dr_lee", "confirm")
    picks = label_next(engine, 8, emb, pool_factor=1)
    assert not {"a0", "b0"} & set(picks["case_id"])
    assert len(picks) == 8
    # with a0 and b0 decided, the first pick is the pool case farthest from both: cluster c is
    # outside the pool (sure), so it is an "a" or "b" case at the far edge, never at distance 0
    assert picks["distance"].iloc[0] > 0 and np.isfinite(picks["distance"].iloc[0])


def test_without_probabilities_diversity_alone_picks(tmp_path: Path) -> None:
    scores, emb_path = _planted(tmp_path, with_proba=False)
    engine = make_engine(f"sqlite:///{tmp_path / 'review.db'}")
    import_scores(engine, scores, tmp_path / "data")
    from medssl.review.embeddings import read_embeddings

    picks = label_next(engine, 3, read_embeddings(emb_path))
    assert sorted(picks["case_id"].str[0]) == ["a", "b", "c"]  # one per cluster
    with pytest.raises(ReviewError, match="--embeddings"):
        label_next(engine, 3, None)  # nothing to rank by: the error says how to give embeddings


def test_an_embeddings_file_of_other_cases_is_refused(store) -> None:
    engine, _ = store
    with pytest.raises(ReviewError, match="none of the undecided cases"):
        label_next(engine, 2, (["x1", "x2"], np.zeros((2, 2), dtype=np.float32)))


def test_requests_are_idempotent_and_keep_every_decision(store) -> None:
    engine, emb = store
    record_decision(engine, "c0", "dr_lee", "dismiss", note="artefact")
    before = [(e.action, e.reviewer, e.note) for e in case_events(engine, "c0")]
    picks = label_next(engine, 3, emb, pool_factor=2)
    asked = picks["case_id"].tolist()
    assert request_labels(engine, asked, "ana", dict(zip(picks["case_id"], picks["reason"]))) == 3
    assert request_labels(engine, asked, "ana") == 0  # the same cases again: nothing added
    assert request_labels(engine, [*asked, "c0"], "bob") == 0  # c0 is decided: not requested
    requests = label_requests(engine)
    assert requests["case_id"].tolist() == asked and set(requests["requested_by"]) == {"ana"}
    assert requests["reason"].str.len().min() > 0
    queue = label_next_queue(engine)
    assert queue.rows["case_id"].tolist() == asked and queue.total == 3
    assert set(queue.rows["requested_by"]) == {"ana"}
    # a reviewer labels the first requested case: it leaves the list, its decision stands
    record_decision(engine, asked[0], "dr_lee", "assign_class", label="pneumonia")
    assert label_next_queue(engine).rows["case_id"].tolist() == asked[1:]
    assert case_state(engine, asked[0]).label == "pneumonia"
    assert [(e.action, e.reviewer, e.note) for e in case_events(engine, "c0")] == before
    # paging
    page2 = label_next_queue(engine, page=2, page_size=1)
    assert page2.rows["case_id"].tolist() == [asked[2]] and page2.n_pages == 2


def test_requesting_an_unknown_case_says_what_to_import(store) -> None:
    engine, _ = store
    with pytest.raises(ReviewError, match="import their score file"):
        request_labels(engine, ["nope"], "ana")
    assert label_requests(engine).empty


def test_pick_label_next_needs_a_positive_count() -> None:
    frame = pd.DataFrame({"case_id": ["a"], "domain": ["x"], "predicted_label": ["1"], "predicted_proba": [0.5],
                          "n_classes": [2]})
    with pytest.raises(ReviewError, match="at least 1"):
        pick_label_next(frame, 0)


def test_medssl_app_refuses_a_missing_checkpoint(tmp_path: Path, capsys) -> None:
    from medssl.cli import main

    code = main(["app", "--db", f"sqlite:///{tmp_path / 'review.db'}", "--import-only",
                 "--checkpoint", str(tmp_path / "none.pt")])
    assert code != 0
    assert f"--checkpoint {tmp_path / 'none.pt'} does not exist; pass the checkpoint.pt" in capsys.readouterr().err


def test_an_embeddings_file_limits_the_picks_to_its_own_cases(store, tmp_path: Path) -> None:
    """A store holding two domains, embeddings of one (as `medssl demo` serves the app): every pick
    is a case of that file; without the file both domains compete on uncertainty alone."""
    engine, emb = store
    other = pd.read_parquet(tmp_path / "data" / "scores.parquet")
    other["case_id"] = "tx-" + other["case_id"]
    other["domain"] = "transactions"
    other["predicted_proba"] = 0.5  # more uncertain than every imaging case
    (tmp_path / "tx").mkdir()
    other.to_parquet(tmp_path / "tx" / "scores.parquet", index=False)
    import_scores(engine, tmp_path / "tx" / "scores.parquet", tmp_path / "tx")
    picks = label_next(engine, 4, emb)
    assert set(picks["domain"]) == {"imaging"} and len(picks) == 4
    plain = label_next(engine, 4, None)  # the coin tosses of both domains (a0 is one too), case id order
    assert plain["case_id"].tolist() == ["a0", "tx-a0", "tx-a1", "tx-a2"]
