"""The reviewer workflow of issue 16 (store level and AppTest): per-domain percentiles and columns
in the queue, the queue's row texts under both pandas string dtypes, filters that survive opening a
case, signed sign-in tokens (refresh, tamper, expiry, sign-out), deep links, and the full
decisions export (function, CLI, the queue's download buttons).

Two real score files: PneumoniaMNIST images (tests/review_scores.py) and ULB credit-card
transactions scored by a small real model fitted here (distance from the mean of the standardised
V1-V28, Amount), whose raw scores are several times the images' -- as an ECG distance of 50.9 is
beside an ICU one of 1.49.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete
from streamlit.testing.v1 import AppTest

from medssl.cli import main
from medssl.review import (
    account_for_token, add_user, claim_case, decisions_table, export_decisions, import_scores, issue_token,
    list_queue, make_engine, record_decision, revoke_token, row_text, undo_last,
)
from medssl.review.models import User, utcnow
from app_text import shown
from review_scores import build_real_scores

APP = str(Path(__file__).resolve().parents[1] / "apps" / "Home.py")
TIMEOUT = 60
ULB = Path("transactions") / "ulb_creditcard_a.csv"
N_TRANSACTIONS = 200


def build_transaction_scores(shared_data: Path, folder: Path, flag_top: int = 8) -> Path:
    """Score the first ``N_TRANSACTIONS`` real ULB transactions: the anomaly score is the distance
    from the mean of the standardised features (V1-V28, log Amount) of all 3,704 rows; the
    percentile is its rank. Same columns as ``medssl score`` (no predicted class: no head)."""
    df = pd.read_csv(shared_data / ULB)
    x = df[[f"V{i}" for i in range(1, 29)]].assign(Amount=np.log1p(df["Amount"])).to_numpy(np.float64)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    score = np.linalg.norm(z[:N_TRANSACTIONS], axis=1)
    flagged = np.zeros(N_TRANSACTIONS, dtype=bool)
    flagged[np.argsort(-score)[:flag_top]] = True
    ids = df["transaction_id"].astype(str).to_numpy()[:N_TRANSACTIONS]
    scores = pd.DataFrame({
        "case_id": ids, "patient_id": ids, "domain": "transactions", "anomaly_score": score,
        "anomaly_percentile": pd.Series(score).rank(pct=True).to_numpy() * 100.0, "flagged": flagged,
        "predicted_label": pd.Series([None] * N_TRANSACTIONS, dtype=object), "predicted_proba": np.nan,
        "model_id": hashlib.sha256(z.tobytes()).hexdigest()[:16], "scored_at": utcnow().isoformat(),
    })
    folder.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(folder / "scores.parquet", index=False)
    return folder / "scores.parquet"


@pytest.fixture(scope="module")
def score_files(shared_data: Path, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("workflow")
    return build_real_scores(shared_data, root / "imaging"), build_transaction_scores(shared_data, root / "tx")


@pytest.fixture()
def store(new_review_db, score_files: tuple[Path, Path], monkeypatch) -> str:
    """The URL of a fresh store with two accounts and both score files: a SQLite file or a database
    on the session's PostgreSQL server (tests/conftest.py), for the ``[sqlite]`` / ``[postgresql]`` variant."""
    url = new_review_db("review")
    engine = make_engine(url)
    add_user(engine, "dr_lee", "clinician", "lee-password")
    add_user(engine, "dr_kim", "clinician", "kim-password")
    for path in score_files:
        import_scores(engine, path)
    monkeypatch.setenv("MEDSSL_DB", url)
    monkeypatch.delenv("MEDSSL_EMBEDDINGS", raising=False)
    return url


def _all_scores(score_files: tuple[Path, Path]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in score_files], ignore_index=True)


# ---- the queue: per-domain percentile, columns, order ----------------------------------------------------

def test_all_domains_are_ranked_by_percentile_within_their_domain(store: str, score_files) -> None:
    df = _all_scores(score_files)
    # the raw scales differ: every flagged transaction scores above every image
    flagged = df[df["flagged"]]
    assert flagged.query("domain == 'transactions'")["anomaly_score"].min() > flagged.query("domain == 'imaging'")["anomaly_score"].max()
    expected = df.assign(pct=df.groupby("domain")["anomaly_score"].rank(method="max", pct=True) * 100.0)
    expected = expected[expected["flagged"]].sort_values(["pct", "anomaly_score", "case_id"], ascending=[False, False, True])

    page = list_queue(make_engine(store), page_size=50)
    rows = page.rows
    assert page.total == 12 + 8
    assert rows["case_id"].tolist() == expected["case_id"].tolist()
    assert rows["domain_percentile"].to_numpy() == pytest.approx(expected["pct"].to_numpy())
    # the top of each domain comes first, not all transactions before any image
    assert set(rows["domain"][:2]) == {"imaging", "transactions"}
    assert rows["domain"].tolist() != sorted(rows["domain"].tolist(), key=lambda d: d != "transactions")
    assert {"domain", "predicted_label", "predicted_proba", "claimed_until"} <= set(rows.columns)
    imaging = list_queue(make_engine(store), domain="imaging").rows
    assert imaging["domain_percentile"].to_numpy() == pytest.approx(
        expected.query("domain == 'imaging'")["pct"].to_numpy())  # a filter does not change the rank


def test_row_texts_are_the_same_for_object_none_and_pandas3_str_nan(store: str) -> None:
    engine = make_engine(store)
    cases = list_queue(engine, domain="imaging").rows["case_id"].tolist()
    claim_case(engine, cases[0], "dr_lee")
    record_decision(engine, cases[0], "dr_lee", "assign_class", label="1")
    claim_case(engine, cases[1], "dr_kim")
    rows = list_queue(engine, page_size=50).rows
    assert rows["label"].dtype == object and rows["claimed_by"].dtype == object
    as_str = rows.copy()
    for col in ("label", "claimed_by", "predicted_label"):  # what pandas 3 makes of a [str, None] list
        as_str[col] = pd.Series(rows[col].tolist(), dtype="str")
    assert as_str["label"].isna().sum() == len(rows) - 1 and not any(v is None for v in as_str["label"])
    old = [row_text(r) for r in rows.itertuples(index=False)]
    new = [row_text(r) for r in as_str.itertuples(index=False)]
    assert old == new
    by_case = {t.case_id: t for t in new}
    assert by_case[cases[0]].status == "labelled (1)" and by_case[cases[0]].label == "1"
    kim = by_case[cases[1]]
    until = rows.set_index("case_id").loc[cases[1], "claimed_until"]
    assert (kim.holder, kim.claimed) == ("dr_kim", f"dr_kim until {until:%H:%M} UTC")
    others = [t for t in new if t.case_id not in cases[:2]]
    assert {(t.status, t.claimed, t.label, t.holder) for t in others} == {("open", "—", None, None)}
    assert {t.predicted for t in new if t.domain == "transactions"} == {"—"}
    assert {t.probability for t in new if t.domain == "transactions"} == {"—"}
    assert all(t.predicted in ("0", "1") and 0.5 <= float(t.probability) <= 1 for t in new if t.domain == "imaging")


# ---- sign-in tokens ------------------------------------------------------------------------------------------

def test_a_token_signs_in_until_it_expires_is_revoked_or_is_tampered_with(store: str, new_review_db) -> None:
    engine = make_engine(store)
    token = issue_token(engine, "dr_lee")
    assert account_for_token(engine, token).name == "dr_lee"
    assert "lee-password" not in token
    name, expires, token_id, signature = token.split(".")
    other = issue_token(engine, "dr_kim").split(".")[0]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    for bad in (f"{other}.{expires}.{token_id}.{signature}",  # another account's name, same signature
                f"{name}.{int(expires) + 3600}.{token_id}.{signature}",  # a later expiry
                f"{name}.{expires}.{token_id}.{flipped}", "", "x.y", token + "."):
        assert account_for_token(engine, bad) is None, bad
    assert account_for_token(engine, token, now=utcnow() + dt.timedelta(hours=8, seconds=1)) is None
    expired = issue_token(engine, "dr_lee", now=utcnow() - dt.timedelta(hours=9))
    assert account_for_token(engine, expired) is None
    assert revoke_token(engine, token) and revoke_token(engine, token)  # idempotent
    assert account_for_token(engine, token) is None
    kim = issue_token(engine, "dr_kim")
    with engine.begin() as conn:
        conn.execute(delete(User).where(User.name == "dr_kim"))
    assert account_for_token(engine, kim) is None  # the account is gone
    # bound to the browser that signed in: another address / User-Agent gets nothing, revocation included
    bound = issue_token(engine, "dr_lee", bound_to="10.0.0.7|Mozilla/5.0 ward-pc")
    assert account_for_token(engine, bound, bound_to="10.0.0.7|Mozilla/5.0 ward-pc").name == "dr_lee"
    for elsewhere in ("", "10.0.0.8|Mozilla/5.0 ward-pc", "10.0.0.7|Mozilla/5.0 home-pc"):
        assert account_for_token(engine, bound, bound_to=elsewhere) is None, elsewhere
        assert not revoke_token(engine, bound, bound_to=elsewhere)
    assert account_for_token(engine, bound, bound_to="10.0.0.7|Mozilla/5.0 ward-pc").name == "dr_lee"
    # another store has its own secret: a token does not carry over
    assert account_for_token(make_engine(new_review_db("other")), issue_token(engine, "dr_lee")) is None


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def _sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input[0].input(name)
    at.text_input[1].input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_the_app_restores_a_signed_in_session_from_the_url_and_sign_out_revokes_it(store: str) -> None:
    at = _sign_in(_app().run(), "dr_lee", "lee-password")
    token = at.query_params["session"][0] if isinstance(at.query_params["session"], list) else at.query_params["session"]
    assert account_for_token(make_engine(store), token).name == "dr_lee"
    refreshed = _app()
    refreshed.query_params["session"] = token  # what a browser refresh sends
    refreshed.run()
    assert [t.value for t in refreshed.title] == ["Review queue"]
    assert refreshed.session_state["account"].name == "dr_lee"
    tampered = _app()
    tampered.query_params["session"] = token[:-2] + "00"
    tampered.run()
    assert [t.value for t in tampered.title] == ["medssl review"]
    assert "account" not in tampered.session_state
    assert [i.value for i in tampered.info] == ["Your sign-in has expired or was ended; sign in again."]
    at.switch_page("views/sign_out.py").run()
    assert [t.value for t in at.title] == ["medssl review"]
    old_url = _app()
    old_url.query_params["session"] = token
    old_url.run()
    assert [t.value for t in old_url.title] == ["medssl review"] and "account" not in old_url.session_state


def test_a_deep_link_opens_its_case_after_sign_in(store: str) -> None:
    engine = make_engine(store)
    case_id = list_queue(engine, domain="imaging").rows["case_id"][3]
    at = _app()
    at.query_params["case"] = case_id
    at.run()
    assert [t.value for t in at.title] == ["medssl review"]  # sign in first
    _sign_in(at, "dr_lee", "lee-password")
    assert [shown(t.value) for t in at.title] == [f"Case {case_id}"]
    unknown = _app()
    unknown.query_params["case"] = "no-such-case"
    unknown.query_params["session"] = issue_token(engine, "dr_lee")
    unknown.run()
    assert [t.value for t in unknown.title] == ["Review queue"]
    assert any("'no-such-case' is not in the review store" in shown(e.value) for e in unknown.error)


# ---- filters that persist -------------------------------------------------------------------------------------

def _widget(at: AppTest, kind: str, label: str):
    return next(w for w in getattr(at, kind) if w.label == label)


def test_queue_filters_survive_opening_a_case_and_coming_back(store: str) -> None:
    at = _sign_in(_app().run(), "dr_lee", "lee-password")
    assert _widget(at, "selectbox", "Domain").options == ["all (20)", "imaging (12)", "transactions (8)"]
    _widget(at, "selectbox", "Domain").set_value("imaging").run()
    _widget(at, "selectbox", "Status").set_value("open").run()
    _widget(at, "selectbox", "Cases per page").set_value(10).run()
    _widget(at, "number_input", "Page").set_value(2).run()
    assert at.caption[0].value == "12 flagged case(s) · page 2 of 2"
    second_page = [b.key for b in at.button if b.key and b.key.startswith("open-")]
    assert len(second_page) == 2
    at.button(key=second_page[0]).click().run()
    assert not at.exception, at.exception
    assert [shown(t.value) for t in at.title] == [f"Case {second_page[0].removeprefix('open-')}"]
    at.switch_page("views/queue.py").run()  # the sidebar's "Review queue"
    assert not at.exception, at.exception
    assert _widget(at, "selectbox", "Domain").value == "imaging"
    assert _widget(at, "selectbox", "Status").value == "open"
    assert _widget(at, "selectbox", "Cases per page").value == 10
    assert _widget(at, "number_input", "Page").value == 2
    assert [b.key for b in at.button if b.key and b.key.startswith("open-")] == second_page
    _widget(at, "text_input", "Patient id").input(second_page[1].removeprefix("open-")).run()
    at.button(key=second_page[1]).click().run()
    at.switch_page("views/queue.py").run()
    assert _widget(at, "text_input", "Patient id").value == second_page[1].removeprefix("open-")


# ---- the decisions export -------------------------------------------------------------------------------------

def _decide(engine, case_id: str, reviewer: str, action: str, label: str | None = None, note: str | None = None) -> None:
    claim_case(engine, case_id, reviewer)
    record_decision(engine, case_id, reviewer, action, label=label, note=note)


def test_every_decision_is_exported_with_who_when_model_note_and_outcome(store: str, tmp_path: Path, capsys) -> None:
    engine = make_engine(store)
    rows = list_queue(engine, page_size=50).rows.set_index("case_id")
    image, image2 = rows.query("domain == 'imaging'").index[:2]
    tx = rows.query("domain == 'transactions'").index[0]
    _decide(engine, image, "dr_lee", "confirm", note="clear consolidation")
    _decide(engine, image, "dr_lee", "assign_class", label="0", note="on second look: normal")
    _decide(engine, tx, "dr_kim", "dismiss")
    claim_case(engine, tx, "dr_kim")
    undo_last(engine, tx, "dr_kim")
    _decide(engine, image2, "dr_kim", "dismiss", note="artefact")

    table = decisions_table(engine)
    assert table.columns.tolist() == ["case_id", "patient_id", "domain", "decision", "label", "reviewer", "time",
                                      "model_id", "note", "outcome", "undone_by", "undone_at"]
    assert table[["case_id", "decision", "label", "reviewer", "note", "outcome", "undone_by"]].values.tolist() == [
        [image, "confirm", rows.loc[image, "predicted_label"], "dr_lee", "clear consolidation", "overridden", None],
        [image, "assign_class", "0", "dr_lee", "on second look: normal", "standing", None],
        [tx, "dismiss", "normal", "dr_kim", None, "undone", "dr_kim"],
        [image2, "dismiss", None, "dr_kim", "artefact", "standing", None],
    ]
    assert table["patient_id"].tolist() == [image, image, tx, image2]
    assert table["domain"].tolist() == ["imaging", "imaging", "transactions", "imaging"]
    assert table["model_id"].tolist() == [rows.loc[c, "model_id"] for c in (image, image, tx, image2)]
    times = pd.to_datetime(table["time"], utc=True)
    assert times.is_monotonic_increasing and (pd.Timestamp.now(tz="UTC") - times).max() < pd.Timedelta(hours=1)
    assert table["undone_at"].notna().tolist() == [False, False, True, False]

    csv, parquet = tmp_path / "out" / "decisions.csv", tmp_path / "out" / "decisions.parquet"
    assert main(["-q", "audit", "export", "--db", store, "--out", str(csv)]) == 0
    assert main(["-q", "audit", "export", "--db", store, "--out", str(parquet)]) == 0
    assert "wrote 4 decisions" in capsys.readouterr().out
    read_csv = pd.read_csv(csv, dtype=str, keep_default_na=False).replace("", None)
    read_parquet = pd.read_parquet(parquet)
    for read in (read_csv, read_parquet):
        assert read.astype(object).where(read.notna(), None).values.tolist() == table.values.tolist()
    assert main(["-q", "audit", "export", "--db", store, "--out", str(csv)]) == 2  # no silent replace
    assert "exists; choose another path, or pass --overwrite" in capsys.readouterr().err
    assert main(["-q", "audit", "export", "--db", store, "--out", str(csv), "--overwrite"]) == 0
    assert main(["-q", "audit", "export", "--db", store, "--out", str(tmp_path / "d.xlsx")]) == 2
    assert "end the file name in .csv or .parquet" in capsys.readouterr().err
    assert export_decisions(engine, tmp_path / "again.parquet") == 4


def test_the_queue_offers_the_decisions_as_csv_and_parquet_to_a_clinician(store: str) -> None:
    engine = make_engine(store)
    case_id = list_queue(engine, domain="imaging").rows["case_id"][0]
    _decide(engine, case_id, "dr_kim", "dismiss", note="artefact")  # a model with a head: no label
    at = _sign_in(_app().run(), "dr_lee", "lee-password")
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    assert set(buttons) == {"Decisions as CSV (1)", "Decisions as Parquet (1)",
                            "Download decisions as labels CSV (0 labelled cases)"}


# ---- the same on PostgreSQL, as the app role that holds only `medssl audit grants` -----------------------

@pytest.fixture(scope="module")
def pg_app_url(pg_server):
    """A database owned by medssl_owner on the session's server, tables made by the owner, the app
    role granted what ``medssl audit grants`` prints: the app role's URL."""
    from sqlalchemy import text

    from medssl.review.append_only import app_role_grants

    if isinstance(pg_server, str):
        pytest.skip(pg_server)
    for role in ("medssl_owner", "medssl_app"):
        pg_server.ensure_role(role)
    pg_server.create_database("workflow_app_role", owner="medssl_owner")
    owner = make_engine(pg_server.url("medssl_owner", "workflow_app_role"))
    with owner.begin() as conn:
        for statement in app_role_grants("medssl_app"):
            conn.execute(text(statement))
    owner.dispose()
    yield pg_server.url("medssl_app", "workflow_app_role")
    pg_server.drop_database("workflow_app_role")


def test_tokens_percentiles_and_export_on_postgresql_as_the_app_role(pg_app_url: str, score_files) -> None:
    engine = make_engine(pg_app_url)
    add_user(engine, "dr_lee", "clinician", "lee-password")
    for path in score_files:
        import_scores(engine, path)
    token = issue_token(engine, "dr_lee")
    assert account_for_token(engine, token).name == "dr_lee"
    assert revoke_token(engine, token) and revoke_token(engine, token)
    assert account_for_token(engine, token) is None
    df = _all_scores(score_files)
    expected = df.assign(pct=df.groupby("domain")["anomaly_score"].rank(method="max", pct=True) * 100.0)
    expected = expected[expected["flagged"]].sort_values(["pct", "anomaly_score", "case_id"], ascending=[False, False, True])
    rows = list_queue(engine, page_size=50).rows
    assert rows["case_id"].tolist() == expected["case_id"].tolist()
    assert rows["domain_percentile"].to_numpy() == pytest.approx(expected["pct"].to_numpy())
    _decide(engine, rows["case_id"][0], "dr_lee", "confirm", note="seen")
    assert decisions_table(engine)[["decision", "reviewer", "note", "outcome"]].values.tolist() == [
        ["confirm", "dr_lee", "seen", "standing"]]
