"""The queue page's "Re-rank by decisions" toggle with streamlit.testing.v1.AppTest on a real score
file and its embeddings (tests/review_scores.py: PneumoniaMNIST validation images)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medssl.errors import DataError

from medssl.review import make_engine, record_decision, rerank_cases
from medssl.review.embeddings import read_embeddings
from app_text import shown
from review_app import real_scores, store  # noqa: F401 (pytest fixtures)
from review_app import signed_in as _signed_in


def _queue_order(at: AppTest) -> list[str]:
    return [b.key.removeprefix("open-") for b in at.button if (b.key or "").startswith("open-")]


def _toggle(at: AppTest):
    return next(t for t in at.toggle if t.label == "Re-rank by decisions")


def test_confirming_a_case_pulls_its_look_alikes_up_the_queue(store: str, real_scores: Path, monkeypatch) -> None:
    emb = real_scores.parent / "embeddings.parquet"
    monkeypatch.setenv("MEDSSL_EMBEDDINGS", str(emb))
    engine = make_engine(store)
    scores = pd.read_parquet(real_scores)
    unflagged = scores[~scores["flagged"]].sort_values("anomaly_score")["case_id"].tolist()
    confirmed = unflagged[0]  # the least anomalous case: a reviewer confirms it anyway (found by other means)
    record_decision(engine, confirmed, "ana", "confirm")
    at = _signed_in("dr_lee", "lee-password")
    plain = _queue_order(at)
    assert confirmed not in plain and "Re-ranked" not in [shown(m.value) for m in at.markdown]

    _toggle(at).set_value(True).run()
    assert not at.exception, at.exception
    ids, matrix = read_embeddings(emb)
    expected = rerank_cases(engine, ids, matrix).table["case_id"].tolist()
    shown_order = _queue_order(at)
    assert shown_order == expected[:len(shown_order)]  # page 1 of the re-ranked queue, best first
    by_score = scores.sort_values("anomaly_score", ascending=False)["case_id"].tolist()
    assert by_score[-1] == confirmed and expected[-1] == confirmed  # its own decision does not move it
    assert "**Re-ranked**" in [m.value for m in at.markdown]
    assert any("1 confirmed and 0 dismissed" in shown(c.value) for c in at.caption)
    # the undecided case that looks most like the confirmed one moved up against the anomaly order
    table = rerank_cases(engine, ids, matrix).table
    look_alike = table[table["case_id"] != confirmed].sort_values("pull", ascending=False)["case_id"].iloc[0]
    assert look_alike not in plain
    why = table.set_index("case_id")["reason"]
    assert why[look_alike].startswith(f"like confirmed {confirmed} (+") and why[confirmed] == "decided: confirmed"
    shown_texts = [t.value for t in at.text]
    assert "**Why re-ranked**" in [m.value for m in at.markdown]
    reasons_on_page = [why[c] for c in shown_order if why[c]]
    assert reasons_on_page and reasons_on_page == [t for t in shown_texts if t.startswith(("like ", "decided: "))]
    assert expected.index(look_alike) < by_score.index(look_alike), (look_alike, expected, by_score)


def test_without_an_embeddings_file_the_toggle_is_disabled(store: str, real_scores: Path, monkeypatch) -> None:
    monkeypatch.delenv("MEDSSL_EMBEDDINGS", raising=False)
    at = _signed_in("dr_lee", "lee-password")
    assert _toggle(at).disabled
    assert "--embeddings" in _toggle(at).help


def test_the_store_lists_the_reranked_queue_with_unflagged_cases(store: str, real_scores: Path) -> None:
    from medssl.review import list_queue

    engine = make_engine(store)
    scores = pd.read_parquet(real_scores)
    ids, matrix = read_embeddings(real_scores.parent / "embeddings.parquet")
    record_decision(engine, scores.loc[scores["anomaly_score"].idxmin(), "case_id"], "ana", "confirm")
    table = rerank_cases(engine, ids, matrix).table
    page = list_queue(engine, page_size=1000, reranked=table.set_index("case_id")["reranked"])
    assert page.rows["case_id"].tolist() == table["case_id"].tolist()  # every embedded case, best first
    assert page.total == len(scores) > int(scores["flagged"].sum())
    assert page.rows["reranked"].is_monotonic_decreasing
    plain = list_queue(engine, page_size=1000)
    assert "reranked" not in plain.rows and plain.total == int(scores["flagged"].sum())


def test_an_embeddings_file_of_other_cases_is_an_error_on_the_page_and_the_plain_queue_stays(
        store: str, real_scores: Path, tmp_path: Path, monkeypatch) -> None:
    foreign = tmp_path / "other_embeddings.parquet"
    pd.DataFrame({"case_id": ["elsewhere:1", "elsewhere:2"], "embedding": [[0.0, 1.0], [1.0, 0.0]]}).to_parquet(foreign)
    monkeypatch.setenv("MEDSSL_EMBEDDINGS", str(foreign))
    at = _signed_in("dr_lee", "lee-password")
    plain = _queue_order(at)
    _toggle(at).set_value(True).run()
    assert not at.exception, at.exception
    assert [shown(e.value) for e in at.error] == [
        "Cannot re-rank: no case in the embeddings file is in the review store: were both written by the "
        "same `medssl score` run?"]
    assert _queue_order(at) == plain


def test_embeddings_with_nan_or_ragged_rows_are_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "emb.parquet"
    pd.DataFrame({"case_id": ["a", "b"], "embedding": [[0.0, float("nan")], [1.0, 0.0]]}).to_parquet(path)
    with pytest.raises(DataError, match="1 of 2 embeddings hold NaN or infinite values"):
        read_embeddings(path)
    pd.DataFrame({"case_id": ["a", "b"], "embedding": [[0.0, 1.0, 2.0], [1.0, 0.0]]}).to_parquet(path)
    with pytest.raises(DataError, match="not one fixed-length vector of numbers per case"):
        read_embeddings(path)
