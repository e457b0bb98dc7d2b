"""ONNX deployment export (issue 19, item 5): ``medssl export onnx`` and ``medssl score --runtime onnx``.

For every registered encoder that can export, the exported bundle (loaded through
``medssl.models.load_model``, the one loader) gives the torch path's embeddings, probabilities and
anomaly scores within 1e-4; the encoders that cannot export are listed here explicitly and must
fail with a one-line error naming them. Then the whole CLI: ``medssl score --runtime onnx`` on real
chest X-rays equals the default torch run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from score_models import build_model_file, npz_data_dir

from medssl.anomaly import create_scorer
from medssl.checkpoints import Checkpoint, save_checkpoint
from medssl.cli import main
from medssl.encoders import create_encoder, encoder_example, list_encoders
from medssl.models import load_model

pytest.importorskip("onnxruntime", reason="onnxruntime is a medssl dependency; `make install` installs it")

ATOL = 1e-4
# the FT-Transformer expands its [CLS] token to the traced batch size: the graph only runs at that size
NOT_EXPORTABLE = {"ft_transformer"}
HEAVY = {"resnet50"}  # ~17 s on 2 busy cores


def _model_file(name: str, path: Path) -> Path:
    """A fine-tuned-style model file over encoder ``name`` (its contract kwargs and domain): an
    ``nn.Linear`` head and a kNN scorer fitted on embeddings of 24 random inputs."""
    ex = encoder_example(name)
    torch.manual_seed(0)
    encoder = create_encoder(name, **ex.kwargs).eval()
    with torch.inference_mode():
        ref = encoder(torch.rand(24, *ex.input_shape))
    scorer = create_scorer("knn", k=3).fit(ref)
    head = torch.nn.Linear(encoder.num_features, 3)
    meta = {"encoder": {"name": name, "kwargs": ex.kwargs}, "domain": ex.domain, "preprocessing": {},
            "method": "none", "input_shape": list(ex.input_shape), "classes": ["a", "b", "c"], "mode": "linear",
            "scorer": {"name": "knn", "kwargs": {"k": 3}}}
    return save_checkpoint(path, Checkpoint(
        kind="model", meta=meta, states={"encoder": encoder.state_dict(), "head": head.state_dict()},
        tensors={f"scorer/{k}": v for k, v in scorer.state_dict().items()},
    ))


def test_every_registered_encoder_is_either_exportable_or_listed() -> None:
    assert NOT_EXPORTABLE <= set(list_encoders())  # a renamed encoder must be re-listed here


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in list_encoders()])
def test_onnx_equals_torch_for_every_encoder(name: str, tmp_path: Path, capsys) -> None:
    model_pt = _model_file(name, tmp_path / "model.pt")
    out = tmp_path / "model.onnx"
    rc = main(["export", "onnx", "--model", str(model_pt), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    if name in NOT_EXPORTABLE:
        assert rc != 0 and not out.exists()
        assert len(err.splitlines()) == 1 and f"encoder {name!r} cannot be exported to ONNX" in err, err
        return
    assert rc == 0, err
    assert out.with_suffix(".medssl.json").is_file() and out.with_suffix(".medssl.npz").is_file()
    torch_model, onnx_model = load_model(model_pt, device="cpu"), load_model(out)
    x = torch.rand(7, *encoder_example(name).input_shape, generator=torch.Generator().manual_seed(3))
    want, got = torch_model.run_batch(x), onnx_model.run_batch(x)
    assert got.embeddings.shape == want.embeddings.shape
    np.testing.assert_allclose(got.embeddings.numpy(), want.embeddings.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(got.proba, want.proba, atol=ATOL, rtol=0)
    np.testing.assert_allclose(got.anomaly_score, want.anomaly_score, atol=ATOL, rtol=1e-5)
    np.testing.assert_allclose(got.anomaly_percentile, want.anomaly_percentile, atol=ATOL)
    assert onnx_model.classes == ["a", "b", "c"] and onnx_model.model_id != torch_model.model_id


def test_score_runtime_onnx_equals_torch_on_real_xrays(tmp_path: Path, shared_data: Path) -> None:
    data = tmp_path / "data"
    manifest = npz_data_dir(shared_data, data, 60, 40)
    model_pt = build_model_file(tmp_path / "model.pt", data, manifest, kind="model", seed=0)
    onnx_path = tmp_path / "deploy" / "model.onnx"
    onnx_path.parent.mkdir()
    # the model file records no input shape: the first case of --data fixes it
    assert main(["export", "onnx", "--model", str(model_pt), "--out", str(onnx_path), "--data", str(data)]) == 0
    runs = {}
    for runtime, model in (("torch", model_pt), ("onnx", onnx_path)):
        out = tmp_path / f"{runtime}.parquet"
        emb = tmp_path / f"{runtime}.emb.parquet"
        rc = main(["score", "--model", str(model), "--data", str(data), "--out", str(out), "--runtime", runtime,
                   "--embeddings", str(emb), "--chunk-size", "30", "--batch-size", "16"])
        assert rc == 0
        runs[runtime] = (pd.read_parquet(out), pd.read_parquet(emb))
    (t, t_emb), (o, o_emb) = runs["torch"], runs["onnx"]
    assert len(o) == len(manifest) and o["case_id"].tolist() == t["case_id"].tolist()
    for col in ("anomaly_score", "anomaly_percentile", "predicted_proba"):
        np.testing.assert_allclose(o[col].to_numpy(), t[col].to_numpy(), atol=ATOL, rtol=1e-5, err_msg=col)
    assert o["predicted_label"].tolist() == t["predicted_label"].tolist()
    np.testing.assert_allclose(np.stack(o_emb["embedding"]), np.stack(t_emb["embedding"]), atol=ATOL, rtol=0)
    assert o["model_id"].iloc[0] != t["model_id"].iloc[0]  # traced to the bundle, not the .pt


def test_runtime_and_model_must_match(tmp_path: Path, capsys) -> None:
    model_pt = _model_file("small_cnn", tmp_path / "model.pt")
    out = tmp_path / "s.parquet"
    rc = main(["score", "--model", str(model_pt), "--data", str(tmp_path / "data"), "--out", str(out), "--runtime", "onnx"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "medssl export onnx --model" in err
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "onnx", "--model", str(model_pt), "--out", str(onnx_path)]) == 0
    (tmp_path / "model.medssl.npz").unlink()
    rc = main(["score", "--model", str(onnx_path), "--data", str(tmp_path / "data"), "--out", str(out), "--runtime", "onnx"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "model.medssl.npz is missing" in err


def test_pretrained_encoder_export_scores_like_torch(tmp_path: Path, shared_data: Path) -> None:
    """A pretrained encoder file (no head, no scorer): the graph has only ``embedding``; scoring fits
    the domain's anomaly recipe on the train split from onnxruntime's embeddings, as torch does."""
    data = tmp_path / "data"
    manifest = npz_data_dir(shared_data, data, 40, 20)
    enc_pt = build_model_file(tmp_path / "checkpoint.pt", data, manifest, kind="encoder", seed=1)
    onnx_path = tmp_path / "enc.onnx"
    assert main(["export", "onnx", "--model", str(enc_pt), "--out", str(onnx_path), "--input-shape", "1,28,28"]) == 0
    assert load_model(onnx_path).encoder.outputs == ["embedding"]
    frames = []
    for runtime, model in (("torch", enc_pt), ("onnx", onnx_path)):
        out = tmp_path / f"{runtime}.parquet"
        assert main(["score", "--model", str(model), "--data", str(data), "--out", str(out), "--runtime", runtime]) == 0
        frames.append(pd.read_parquet(out))
    t, o = frames
    np.testing.assert_allclose(o["anomaly_score"].to_numpy(), t["anomaly_score"].to_numpy(), atol=ATOL, rtol=1e-5)
    np.testing.assert_allclose(o["anomaly_percentile"].to_numpy(), t["anomaly_percentile"].to_numpy(), atol=ATOL)
    assert o["predicted_label"].isna().all() and t["predicted_label"].isna().all()
