"""`medssl score` with the local engine on real PneumoniaMNIST cases and real model files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from score_models import (
    ENCODER,
    SCORE_COLUMNS,
    build_model_file,
    embed_all,
    npz_data_dir,
    png_data_dir,
    without_time,
)

from medssl.checkpoints import file_sha256, load_checkpoint
from medssl.cli import main
from medssl.data import get_domain
from medssl.encoders.registry import create_encoder
from medssl.anomaly import create_scorer, load_scorer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cxr(tmp_path_factory, shared_data):
    """DATA_DIR with 120 train + 60 val real chest X-rays, a fine-tuned-style model and an encoder checkpoint."""
    root = tmp_path_factory.mktemp("score")
    manifest = npz_data_dir(shared_data, root / "data", 120, 60)
    model = build_model_file(root / "model.pt", root / "data", manifest, kind="model", seed=0)
    encoder = build_model_file(root / "encoder.pt", root / "data", manifest, kind="encoder", seed=1)
    return root, manifest, model, encoder


def _score(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["score", "--model", str(model), "--data", str(data), "--out", str(out), *extra])


def test_model_file_scores_exactly_what_the_model_computes(cxr) -> None:
    root, manifest, model, _ = cxr
    out = root / "model_scores.parquet"
    assert _score(model, root / "data", out, "--chunk-size", "50") == 0
    df = pd.read_parquet(out)
    assert list(df.columns) == SCORE_COLUMNS
    assert df["case_id"].tolist() == manifest["case_id"].tolist()  # every case once, manifest order
    assert df["patient_id"].tolist() == manifest["patient_id"].tolist()
    assert (df["model_id"] == file_sha256(model)).all()
    assert str(df["scored_at"].dt.tz) == "UTC"

    # independent recomputation: encoder forward over all cases, head softmax, stored kNN scorer
    ckpt = load_checkpoint(model)
    enc = create_encoder(ENCODER["name"], **ENCODER["kwargs"])
    enc.load_state_dict(ckpt.states["encoder"])
    emb = embed_all(enc, root / "data", manifest)
    scorer = load_scorer("knn", {k[7:]: v for k, v in ckpt.tensors.items()})
    expected = scorer.score(emb)
    # the job runs the encoder in inference form (batch-norm folded, channels-last): float rounding only
    np.testing.assert_allclose(df["anomaly_score"].to_numpy(), expected, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(df["anomaly_percentile"].to_numpy(), scorer.percentile(df["anomaly_score"].to_numpy()), atol=1e-9)
    n_ref = len(ckpt.tensors["scorer/reference"])
    np.testing.assert_allclose(df["anomaly_percentile"].to_numpy(), scorer.percentile(expected), atol=100 / n_ref + 1e-9)
    head = torch.nn.Linear(enc.num_features, 2)
    head.load_state_dict(ckpt.states["head"])
    with torch.no_grad():
        proba = torch.softmax(head(emb.clone()), dim=1)
    assert df["predicted_label"].tolist() == [["normal", "pneumonia"][i] for i in proba.argmax(1).tolist()]
    np.testing.assert_allclose(df["predicted_proba"].to_numpy(), proba.max(1).values.double().numpy(), rtol=1e-5)
    # default rule of the model: percentile >= 95
    assert df["flagged"].tolist() == (df["anomaly_percentile"] >= 95).tolist()
    assert (root / "model_scores.errors.csv").read_text().strip() == "case_id,path,reason"
    assert not (root / "model_scores.parquet.parts").exists()
    # the score file says which DATA_DIR it scored, so the review app finds the cases' data after a move
    moved = root / "elsewhere" / "scores.parquet"
    moved.parent.mkdir()
    out.rename(moved)
    from medssl.review.queue import scores_data_dir

    assert scores_data_dir(moved) == (root / "data").resolve()


def test_encoder_checkpoint_fits_a_reference_scorer_on_the_train_split(cxr, capsys) -> None:
    root, manifest, _, encoder = cxr
    out = root / "encoder_scores.parquet"
    assert _score(encoder, root / "data", out, "--chunk-size", "64") == 0
    assert "fitted its domain's anomaly recipe 'embedding_knn' (knn) on 120 'train' rows" in capsys.readouterr().err
    df = pd.read_parquet(out)
    assert df["predicted_label"].isna().all() and df["predicted_proba"].isna().all()
    ckpt = load_checkpoint(encoder)
    enc = create_encoder(ENCODER["name"], **ENCODER["kwargs"])
    enc.load_state_dict(ckpt.states["encoder"])
    emb = embed_all(enc, root / "data", manifest)
    ref = create_scorer("knn", normalize="l2").fit(emb[:120])  # the imaging anomaly recipe
    np.testing.assert_allclose(df["anomaly_score"].to_numpy(), ref.score(emb), rtol=1e-5, atol=1e-9)

    rc = _score(encoder, root / "data", root / "x.parquet", "--reference-split", "test")
    err = capsys.readouterr().err
    assert rc != 0 and "no anomaly-scorer statistics" in err and "'test'" in err and "Traceback" not in err
    assert not (root / "x.parquet").exists()


def test_a_small_reference_split_uses_fewer_neighbours_instead_of_failing(cxr, tmp_path, capsys) -> None:
    root, manifest, _, encoder = cxr
    from medssl.data import write_manifest

    small = manifest.copy()
    small["split"] = ["train"] * 6 + ["val"] * (len(small) - 6)  # 6 reference cases: k=10 cannot work
    write_manifest(small, tmp_path / "data")
    assert _score(encoder, tmp_path / "data", tmp_path / "s.parquet") == 0
    assert "uses k=5 neighbours instead of 10" in capsys.readouterr().err
    ckpt = load_checkpoint(encoder)
    enc = create_encoder(ENCODER["name"], **ENCODER["kwargs"])
    enc.load_state_dict(ckpt.states["encoder"])
    emb = embed_all(enc, root / "data", manifest)
    expected = create_scorer("knn", k=5, normalize="l2").fit(emb[:6]).score(emb)
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "s.parquet")["anomaly_score"].to_numpy(), expected, rtol=1e-5)  # inference form: float rounding


def test_flag_top_k_across_chunks_and_embeddings_file(cxr) -> None:
    root, manifest, model, _ = cxr
    out, emb_out = root / "top.parquet", root / "top_emb.parquet"
    assert _score(model, root / "data", out, "--chunk-size", "25", "--flag-top", "7", "--embeddings", str(emb_out)) == 0
    df = pd.read_parquet(out)
    assert int(df["flagged"].sum()) == 7
    assert set(df.loc[df["flagged"], "case_id"]) == set(df.nlargest(7, "anomaly_score")["case_id"])
    emb = pd.read_parquet(emb_out)
    assert list(emb.columns) == ["case_id", "embedding"]
    assert emb["case_id"].tolist() == df["case_id"].tolist()
    vectors = np.stack(emb["embedding"].to_numpy())
    assert vectors.shape == (len(manifest), 32) and vectors.dtype == np.float32


def test_rerun_is_idempotent(cxr) -> None:
    root, _, model, _ = cxr
    out = root / "again.parquet"
    assert _score(model, root / "data", out, "--chunk-size", "40", "--flag-percentile", "90") == 0
    first = pd.read_parquet(out)
    assert _score(model, root / "data", out, "--chunk-size", "40", "--flag-percentile", "90") == 0
    second = pd.read_parquet(out)
    pd.testing.assert_frame_equal(without_time(first), without_time(second))
    assert first["flagged"].tolist() == (first["anomaly_percentile"] >= 90).tolist()


def test_killed_run_resumes_to_exactly_the_uninterrupted_rows(cxr, capsys) -> None:
    root, manifest, model, encoder = cxr
    data = root / "data"
    ref_out, out = root / "uninterrupted.parquet", root / "killed.parquet"
    args = ["--chunk-size", "5", "--flag-top", "10"]
    assert _score(model, data, ref_out, *args) == 0
    parts = root / "killed.parquet.parts"
    cmd = [sys.executable, "-m", "medssl", "score", "--model", str(model), "--data", str(data), "--out", str(out), *args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not (parts / "part-00000.parquet").exists():
            assert proc.poll() is None, "the scoring run ended before committing its first part"
            assert time.monotonic() < deadline, "no part committed within 180 s"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    n_chunks = -(-len(manifest) // 5)
    done = sorted(parts.glob("part-*.parquet"))
    assert not out.exists() and 1 <= len(done) < n_chunks  # killed mid-way

    # resuming with another model file is refused and keeps the parts
    rc = _score(encoder, data, out, *args, "--resume")
    err = capsys.readouterr().err
    assert rc != 0 and "cannot resume" in err and "model_id" in err
    assert sorted(parts.glob("part-*.parquet")) == done

    assert _score(model, data, out, *args, "--resume") == 0
    assert f"resuming: {len(done)} of {n_chunks} chunks already scored" in capsys.readouterr().err
    resumed = pd.read_parquet(out)
    assert resumed["case_id"].is_unique and len(resumed) == len(manifest)
    pd.testing.assert_frame_equal(without_time(resumed), without_time(pd.read_parquet(ref_out)))
    assert not parts.exists()


def test_corrupt_inputs_are_reported_and_the_job_completes(tmp_path, shared_data) -> None:
    data, manifest = png_data_dir(shared_data, tmp_path, 24)
    model = build_model_file(tmp_path / "model.pt", data, manifest)  # decodes (and caches) train rows only
    val = manifest[manifest["split"] == "val"]
    bad = val.iloc[[1, 4]]
    for path in bad["path"]:
        Path(path).write_bytes(b"\x89PNG\r\n\x1a\n this file was damaged after ingest")
    gone = val.iloc[7]
    Path(gone["path"]).unlink()
    out = tmp_path / "scores.parquet"
    assert _score(model, data, out, "--chunk-size", "5") == 0
    errors = pd.read_csv(tmp_path / "scores.errors.csv")
    assert list(errors.columns) == ["case_id", "path", "reason"]
    expected = sorted([*bad["case_id"], gone["case_id"]])
    assert sorted(errors["case_id"]) == expected
    assert sorted(errors["path"]) == sorted([*bad["path"], gone["path"]])
    assert errors["reason"].str.len().min() > 10
    df = pd.read_parquet(out)
    assert len(df) == 21 and not set(expected) & set(df["case_id"])
    assert df["case_id"].tolist() == [c for c in manifest["case_id"] if c not in expected]


def test_foreign_and_tampered_model_files_are_refused(cxr, tmp_path, capsys) -> None:
    root, _, model, _ = cxr
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": create_encoder(ENCODER["name"], **ENCODER["kwargs"]).state_dict()}, foreign)
    raw = torch.load(model, weights_only=True)
    raw["states"]["head"]["bias"][0] += 1.0  # e.g. someone nudging the decision threshold
    tampered = tmp_path / "tampered.pt"
    torch.save(raw, tampered)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"PK\x03\x04 definitely not a model")
    for path, words in ((foreign, "not a medssl checkpoint"), (tampered, "integrity check"), (junk, "not a readable")):
        out = tmp_path / f"{path.stem}.parquet"
        assert _score(path, root / "data", out) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and err[0].startswith("medssl: error:")
        assert not out.exists()


def test_bad_flags_give_a_clear_error(cxr, capsys) -> None:
    root, _, model, _ = cxr
    assert _score(model, root / "data", root / "bad.parquet", "--flag-percentile", "120") == 2
    assert "--flag-percentile must be between 0 and 100" in capsys.readouterr().err
    assert _score(model, root / "data", root / "bad.parquet", "--chunk-size", "0") == 2
    assert "--chunk-size" in capsys.readouterr().err
    assert _score(model, root / "nowhere", root / "bad.parquet") == 2
    assert "manifest.parquet does not exist" in capsys.readouterr().err
    (root / "a_file").write_text("not a folder")
    assert _score(model, root / "data", root / "a_file" / "scores.parquet") == 1  # the OS refuses: no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("medssl: error: [Errno 20] Not a directory") and str(root / "a_file") in err[-1]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("mode", ["linear", "knn"])
def test_scores_a_real_finetuned_model_as_finetune_predicts(cxr, mode) -> None:
    from medssl.models import load_model

    root, manifest, _, encoder = cxr
    run = root / f"ft_{mode}"
    assert main(["finetune", "--checkpoint", str(encoder), "--data", str(root / "data"), "--out", str(run),
                 "--mode", mode, "--seed", "0"]) == 0
    out = root / f"ft_{mode}.parquet"
    assert _score(run / "model.pt", root / "data", out, "--chunk-size", "64") == 0
    df = pd.read_parquet(out)
    ft = load_model(run / "model.pt")
    ds = get_domain("imaging").make_dataset(root / "data", manifest, ft.meta["preprocessing"])
    proba = ft.predict_proba(ds)
    assert df["predicted_label"].tolist() == [ft.classes[i] for i in proba.argmax(axis=1)]
    np.testing.assert_allclose(df["predicted_proba"].to_numpy(), proba.max(axis=1), rtol=1e-5)
    emb = embed_all(ft.encoder, root / "data", manifest)
    np.testing.assert_allclose(df["anomaly_score"].to_numpy(), ft.scorer.score(emb), rtol=1e-5, atol=1e-9)
