"""Runs that cannot silently go wrong: outputs never replace inputs, signed model files, guarded
numbers, resumable randomness, clear lines instead of tracebacks and hangs (issue "Reliability").

Real data: PneumoniaMNIST images (../shared/data) through the real CLI; real model files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch

from medssl.checkpoints import Checkpoint, _digest, load_checkpoint, save_checkpoint
from medssl.cli import main
from medssl.errors import CheckpointError
from medssl.models import load_model
from medssl.train.pretrain import pretrain
from score_models import build_model_file, npz_data_dir, png_data_dir

FAST = {"epochs": 2, "batch_size": 16, "limit_cases": 64, "encoder_options": {"width": 8}, "accelerator": "cpu"}


@pytest.fixture(scope="module")
def cxr(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """A DATA_DIR of 120 real images (80 train, 40 val) and a real model file over it."""
    root = tmp_path_factory.mktemp("reliability")
    data = root / "data"
    manifest = npz_data_dir(shared_data, data, n_train=80, n_val=40)
    model = build_model_file(root / "run" / "model.pt", data, manifest)
    return {"root": root, "data": data, "model": model}


def _fails(argv: list[str], match: str, capsys: pytest.CaptureFixture) -> str:
    """Run the CLI, expect exit 2 and exactly one stderr line containing ``match``."""
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_outputs_never_replace_inputs(cxr: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, model = cxr["data"], cxr["model"]
    before, model_bytes = _hashes(data), model.read_bytes()
    manifest = str(data / "manifest.parquet")
    score = ["-q", "score", "--model", str(model), "--data", str(data)]
    _fails([*score, "--out", manifest], "lies inside --data", capsys)
    _fails([*score, "--out", str(model)], "is --model", capsys)
    _fails([*score, "--out", str(data)], "lies inside --data", capsys)
    _fails([*score, "--out", str(tmp_path / "s.parquet"), "--embeddings", manifest], "--embeddings", capsys)
    _fails([*score, "--out", str(tmp_path / "s.parquet"), "--embeddings", str(model)], "is --model", capsys)
    _fails([*score, "--out", str(data / "errors.parquet")], "lies inside --data", capsys)  # its .errors.csv = data's
    evaluate = ["-q", "evaluate", "--model", str(model), "--data", str(data)]
    _fails([*evaluate, "--out", manifest], "lies inside --data", capsys)
    _fails([*evaluate, "--out", str(model)], "is --model", capsys)
    _fails(["-q", "finetune", "--checkpoint", str(model), "--data", str(data), "--out", str(data)], "lies inside --data", capsys)
    _fails(["-q", "finetune", "--checkpoint", str(model), "--data", str(data), "--out", str(model.parent), "--overwrite"],
           "is --checkpoint", capsys)
    _fails(["-q", "pretrain", "--data", str(data), "--out", str(data / "run")], "lies inside --data", capsys)
    _fails(["-q", "label-efficiency", "--checkpoint", str(model), "--data", str(data), "--out", str(data / "le")],
           "lies inside --data", capsys)
    assert _hashes(data) == before and model.read_bytes() == model_bytes


def test_score_and_evaluate_replace_only_their_own_earlier_outputs(
    cxr: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    notes = tmp_path / "notes.parquet"
    pd.DataFrame({"note": ["keep me"]}).to_parquet(notes)
    score = ["-q", "score", "--model", str(cxr["model"]), "--data", str(cxr["data"])]
    _fails([*score, "--out", str(notes)], "is not a medssl score file", capsys)
    assert pd.read_parquet(notes)["note"].tolist() == ["keep me"]
    out = tmp_path / "scores.parquet"
    assert main([*score, "--out", str(out)]) == 0
    assert main([*score, "--out", str(out)]) == 0  # a nightly job rewrites its own file
    assert main([*score, "--out", str(notes), "--overwrite"]) == 0
    assert "anomaly_score" in pd.read_parquet(notes).columns
    report = tmp_path / "config.json"
    report.write_text('{"site": "keep me"}')
    _fails(["-q", "evaluate", "--model", str(cxr["model"]), "--data", str(cxr["data"]), "--out", str(report)],
           "is not a medssl evaluate report", capsys)
    assert report.read_text() == '{"site": "keep me"}'


def test_finetune_refuses_to_replace_a_run_unless_told(cxr: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "ft"
    args = ["-q", "finetune", "--checkpoint", str(cxr["model"]), "--data", str(cxr["data"]), "--out", str(run)]
    assert main(args) == 0
    first = (run / "model.pt").read_bytes()
    _fails(args + ["--seed", "3"], "already holds a run", capsys)
    assert (run / "model.pt").read_bytes() == first  # the model_id earlier score files carry still holds
    assert main(args + ["--seed", "3", "--overwrite"]) == 0
    assert load_checkpoint(run / "model.pt").meta["seed"] == 3


def _forge(path: Path, out: Path, change) -> Path:
    """What someone editing a model file does: change it and recompute the plain digest."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    payload["digest"] = _digest(payload["kind"], payload["meta"], payload["states"], payload["tensors"])
    torch.save(payload, out)
    return out


def _negate_head(payload: dict) -> None:
    payload["states"]["head"] = {k: -v for k, v in payload["states"]["head"].items()}


def test_a_site_key_signs_model_files_and_refuses_forged_ones(cxr: dict[str, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    unsigned = cxr["model"]
    # without a key the digest catches corruption only: a forged file with a recomputed digest loads
    forged_plain = _forge(unsigned, tmp_path / "plain_forged.pt", _negate_head)
    assert load_model(forged_plain).head is not None
    # the kind is part of the digest: flipping it without recomputing is refused
    payload = torch.load(unsigned, weights_only=True)
    payload["kind"] = "encoder"
    torch.save(payload, tmp_path / "kind.pt")
    with pytest.raises(CheckpointError, match="integrity check"):
        load_checkpoint(tmp_path / "kind.pt")

    key_file = tmp_path / "site.key"
    key_file.write_text("correct horse battery staple\n")
    monkeypatch.setenv("MEDSSL_MODEL_KEY_FILE", str(key_file))
    with pytest.raises(CheckpointError, match="not signed"):
        load_model(unsigned)
    signed = tmp_path / "signed" / "model.pt"
    assert main(["-q", "finetune", "--checkpoint", str(_resave(unsigned, tmp_path / "resaved.pt")),
                 "--data", str(cxr["data"]), "--out", str(signed.parent)]) == 0
    assert isinstance(torch.load(signed, weights_only=True)["signature"], str)
    assert load_model(signed).head is not None
    forged = _forge(signed, tmp_path / "forged.pt", _negate_head)
    _fails(["-q", "score", "--model", str(forged), "--data", str(cxr["data"]), "--out", str(tmp_path / "s.parquet")],
           "failed its signature check", capsys)
    _fails(["-q", "evaluate", "--model", str(forged), "--data", str(cxr["data"]), "--out", str(tmp_path / "r.json")],
           "failed its signature check", capsys)
    kind_flipped = _forge(signed, tmp_path / "kind_forged.pt", lambda p: p.update(kind="encoder"))
    with pytest.raises(CheckpointError, match="signature check"):
        load_checkpoint(kind_flipped)
    monkeypatch.setenv("MEDSSL_MODEL_KEY_FILE", str(tmp_path / "other.key"))
    (tmp_path / "other.key").write_text("another site")
    with pytest.raises(CheckpointError, match="another site key|signature check"):
        load_model(signed)
    monkeypatch.delenv("MEDSSL_MODEL_KEY_FILE")
    monkeypatch.setenv("MEDSSL_MODEL_KEY", "correct horse battery staple")  # the same key, given inline
    assert load_model(signed).head is not None


def _resave(path: Path, out: Path) -> Path:
    """Re-save a file through medssl while the key is set (as re-creating it with medssl would)."""
    payload = torch.load(path, weights_only=True)
    return save_checkpoint(out, Checkpoint(payload["kind"], payload["meta"], payload["states"], payload["tensors"]))


def test_malformed_meta_is_one_clear_error(cxr: dict[str, Path], tmp_path: Path) -> None:
    listed = _forge(cxr["model"], tmp_path / "meta_list.pt", lambda p: p.update(meta=["encoder", "small_cnn"]))
    with pytest.raises(CheckpointError, match="malformed layout"):
        load_checkpoint(listed)
    enc = _forge(cxr["model"], tmp_path / "enc_list.pt", lambda p: p["meta"].update(encoder=["small_cnn"]))
    with pytest.raises(CheckpointError, match="no valid encoder description"):
        load_model(enc)
    huge = _forge(cxr["model"], tmp_path / "huge.pt",
                  lambda p: p["meta"].update(encoder={"name": "small_cnn", "kwargs": {"in_channels": 1, "width": "wide"}}))
    with pytest.raises(CheckpointError, match="cannot be built"):
        load_model(huge)


def test_a_score_run_with_no_usable_input_fails_and_keeps_the_earlier_scores(tmp_path: Path, shared_data: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    data, manifest = png_data_dir(shared_data, tmp_path, 12)
    model = build_model_file(tmp_path / "model.pt", data, manifest)
    out = tmp_path / "scores.parquet"
    args = ["-q", "score", "--model", str(model), "--data", str(data), "--out", str(out)]
    assert main(args) == 0
    earlier = out.read_bytes()
    (out.parent / f".{out.name}.abc123.tmp").write_bytes(b"left by a killed commit")
    for path in manifest["path"]:
        Path(path).unlink()
    shutil.rmtree(data / "cache", ignore_errors=True)  # the decode cache would still serve them
    _fails(args, "no case could be scored: all 12 inputs failed", capsys)
    assert out.read_bytes() == earlier
    assert len(pd.read_csv(tmp_path / "scores.errors.csv")) == 12
    assert not list(out.parent.glob(".scores.parquet.*.tmp"))  # stale commit temp files are cleared


def test_non_finite_loss_stops_training_with_one_line(cxr: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    err = _fails(["-q", "pretrain", "--data", str(cxr["data"]), "--out", str(tmp_path / "run"), "--max-steps", "6",
                  "--batch-size", "16", "--lr", "1e30", "--accelerator", "cpu"], "the loss became nan at step", capsys)
    assert "learning rate too high" in err and "nothing was saved" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_resumed_pretraining_run_equals_the_uninterrupted_one(cxr: dict[str, Path], tmp_path: Path) -> None:
    pretrain(cxr["data"], tmp_path / "whole", FAST)
    pretrain(cxr["data"], tmp_path / "split", {**FAST, "epochs": 1})
    pretrain(cxr["data"], tmp_path / "split", FAST, resume=True)
    whole, split = (pd.read_csv(tmp_path / r / "metrics.csv") for r in ("whole", "split"))
    assert len(whole) == 8 and whole["loss"].tolist() == split["loss"].tolist()
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt").states["encoder"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt").states["encoder"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_flags_out_of_range_are_one_line(cxr: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, model, run = str(cxr["data"]), str(cxr["model"]), str(tmp_path / "run")
    pre = ["-q", "pretrain", "--data", data, "--out", run]
    _fails([*pre, "--lr", "inf"], "lr: Input should be a finite number", capsys)
    _fails([*pre, "--seed", "-1"], "seed: Input should be greater than or equal to 0", capsys)
    _fails([*pre, "--seed", str(2**40)], "seed: Input should be less than or equal to 4294967295", capsys)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    _fails([*pre, "--config", str(binary)], "is not a text file", capsys)
    wide = tmp_path / "wide.yaml"
    wide.write_text("encoder_options: {width: 1000000}\n")
    _fails([*pre, "--config", str(wide)], "cannot be built on this machine (one layer alone needs", capsys)
    ft = ["-q", "finetune", "--checkpoint", model, "--data", data, "--out", run]
    _fails([*ft, "--label-fraction", "nan"], "label_fraction: Input should be a finite number", capsys)
    _fails([*ft, "--shots", "0"], "shots: Input should be greater than or equal to 1", capsys)
    le = ["-q", "label-efficiency", "--checkpoint", model, "--data", data, "--out", run]
    _fails([*le, "--modes", ""], "--modes needs at least one of", capsys)
    _fails([*le, "--seeds=-1"], "--seeds must be whole numbers from 0", capsys)
    _fails([*le, "--supervised-epochs", "0"], "--supervised-epochs must be at least 1", capsys)
    if not torch.cuda.is_available():
        _fails([*pre, "--accelerator", "gpu"], "accelerator gpu: torch sees no GPU", capsys)
        _fails(["-q", "score", "--model", model, "--data", data, "--out", str(tmp_path / "s.parquet"), "--device", "cuda"],
               "torch sees no GPU", capsys)
    assert not Path(run).exists()


def test_an_unreachable_ray_cluster_is_one_line_not_a_hang(cxr: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _fails(["-q", "score", "--model", str(cxr["model"]), "--data", str(cxr["data"]), "--out", str(tmp_path / "s.parquet"),
            "--engine", "ray", "--ray-address", f"127.0.0.1:{port}"], f"cannot reach the Ray cluster at 127.0.0.1:{port}", capsys)


def test_a_usage_error_is_one_line_too(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["ingest", "signals", "x", "--format", "wfdb", "--before-s", "-1", "--out", "y"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("medssl ingest signals: error: argument --before-s") and "--help" in err


def test_atomic_writes_get_the_permissions_open_would_give(tmp_path: Path) -> None:
    from medssl.atomic import write_bytes

    old = os.umask(0o027)
    try:
        path = write_bytes(tmp_path / "scores.parquet", b"x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600: another account's app can read it
