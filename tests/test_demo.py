"""`medssl demo` end to end on the bundled sample (without serving the app)."""

from __future__ import annotations

import pandas as pd
import pytest

from medssl.cli import main
from medssl.review import authenticate, count_cases, get_case, list_queue, make_engine


@pytest.mark.slow
def test_demo_runs_the_loop_on_the_bundled_sample(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    code = main(["demo", "--no-serve", "--out", str(out), "--epochs", "1", "--domains", "imaging,transactions"])
    assert code == 0
    printed = capsys.readouterr().out
    password = printed.split("Password:")[1].split()[0]
    engine = make_engine(f"sqlite:///{out / 'review.db'}")
    reviewer = authenticate(engine, "demo_reviewer", password)
    assert reviewer is not None and (reviewer.name, reviewer.role) == ("demo_reviewer", "admin")
    assert authenticate(engine, "demo_reviewer", password + "x") is None  # the printed password is the real one
    imaging = pd.read_parquet(out / "imaging" / "scores.parquet")
    assert len(imaging) == 520  # 400 train + 120 val images in datasets/imaging
    assert imaging["predicted_label"].notna().all()  # a fine-tuned head predicted every case
    # the demo names PneumoniaMNIST's classes at ingest, so the queue and case page say "pneumonia", not "1"
    assert set(imaging["predicted_label"]) <= {"normal", "pneumonia"} and "pneumonia" in set(imaging["predicted_label"])
    assert int(imaging["flagged"].sum()) == 20
    # every flagged case says why (issue 18): a region of the X-ray, a column of the transaction
    for domain in ("imaging", "transactions"):
        scores = pd.read_parquet(out / domain / "scores.parquet")
        assert scores.loc[scores["flagged"], "explanation"].str.match(r"Most unusual: |No single part").all(), domain
    assert get_case(engine, imaging.loc[imaging["flagged"], "case_id"].iloc[0])["explanation"]
    assert count_cases(engine) == 520 + 1000
    assert list_queue(engine).total == 40  # 20 flagged per domain
    # the app the demo serves gets the imaging domain's embeddings, checkpoint and DATA_DIR (issue 18):
    # with them, Label next and Register -> rescore work on the demo's store
    from medssl.commands.demo import app_defaults
    from medssl.review.embeddings import read_embeddings
    from medssl.review.label_next import label_next
    from medssl.review.rescore import rescore

    img = out / "imaging"
    assert app_defaults(img) == ["--embeddings", str(img / "embeddings.parquet"),
                                 "--checkpoint", str(img / "pretrain" / "checkpoint.pt"), "--data", str(img / "data")]
    picks = label_next(engine, 10, read_embeddings(img / "embeddings.parquet"), domain="imaging")
    assert len(picks) == 10 and picks["predicted_proba"].notna().all()
    done = rescore(engine, img / "finetune" / "model.pt", img / "data", out_dir=tmp_path / "rescored")
    assert done.n_imported == 520 and count_cases(engine) == 520 + 1000
    # a second demo into the same folder starts its runs afresh instead of skipping every domain
    capsys.readouterr()
    assert main(["demo", "--no-serve", "--out", str(out), "--epochs", "1", "--domains", "imaging"]) == 0
    assert "failed" not in capsys.readouterr().err
    assert len(pd.read_parquet(out / "imaging" / "scores.parquet")) == 520
