"""Series methods of issue 17: ``cpc`` (signals, ehr) and ``masked_ehr`` (ehr).

Hand-written references for both new losses (InfoNCE over horizons; MSE over hidden observed
entries) with one exact value each, the loss falling after a few optimizer steps on real MIT-BIH
beats / PhysioNet 2012 stays, and one CLI pretrain -> weights_only load -> finetune per method.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medssl.cli import main
from medssl.data import get_domain, read_manifest
from medssl.encoders import create_encoder
from medssl.errors import ConfigError
from medssl.methods import create_method
from medssl.methods.cpc import cpc_loss, info_nce
from medssl.methods.masked_ehr import hide_observed, masked_value_loss

TINY_TCN = "encoder: ts2vec_tcn\nencoder_options: {hidden: 8, num_features: 16, depth: 2}\n"
TINY_GRU = "encoder: gru\nencoder_options: {hidden: 16, num_features: 16}\n"


# ---------------------------------------------------------------- cpc: InfoNCE reference and value

def _reference_cpc(context: np.ndarray, latents: np.ndarray, heads: list[tuple[np.ndarray, np.ndarray]], tau: float) -> float:
    """Loops: for each horizon k, each (b, t) with t + k < S: -log softmax over every (b', t') of
    cos(W_k c[b, t] + a_k, z[b', t' + k]) / tau at the positive (b, t); mean over anchors, then horizons."""
    b, s, _ = latents.shape
    per_k = []
    for k, (w, a) in enumerate(heads, start=1):
        anchors = [(i, t) for i in range(b) for t in range(s - k)]
        losses = []
        for i, t in anchors:
            p = w @ context[i, t] + a
            sims = []
            for j, u in anchors:
                z = latents[j, u + k]
                sims.append(p @ z / (np.linalg.norm(p) * np.linalg.norm(z)) / tau)
            pos = anchors.index((i, t))
            losses.append(-sims[pos] + math.log(np.exp(sims).sum()))
        per_k.append(np.mean(losses))
    return float(np.mean(per_k))


def test_info_nce_exact_value_and_cpc_reference() -> None:
    # two orthogonal predictions, each equal to its own target: -log(e / (e + 1)) = log(1 + 1/e)
    eye = torch.eye(2)
    assert info_nce(eye, eye.clone(), temperature=1.0).item() == pytest.approx(math.log(1 + 1 / math.e), abs=1e-6)
    # a prediction pointing at the wrong target: -log(1 / (1 + e))
    assert info_nce(eye, eye.flip(0), temperature=1.0).item() == pytest.approx(math.log(1 + math.e), abs=1e-6)
    g = torch.Generator().manual_seed(0)
    context, latents = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 6, generator=g)
    torch.manual_seed(0)
    heads = nn.ModuleList(nn.Linear(4, 6) for _ in range(2))
    ours = cpc_loss(context, latents, heads, temperature=0.5).item()
    ref_heads = [(h.weight.detach().double().numpy(), h.bias.detach().double().numpy()) for h in heads]
    ref = _reference_cpc(context.double().numpy(), latents.double().numpy(), ref_heads, 0.5)
    assert ours == pytest.approx(ref, rel=1e-5)


def test_cpc_segments_are_encoded_on_their_own() -> None:
    """Changing segment 3 of a window changes latent 3 only (no future leaks into earlier latents)."""
    torch.manual_seed(0)
    method = create_method("cpc", create_encoder("ts2vec_tcn", in_channels=2, hidden=8, num_features=16, depth=3,
                                                 dropout=0.0), segments=4, predict_steps=2)
    x = torch.randn(2, 2, 41)  # 4 segments of 10 steps; the last step is left out
    y = x.clone()
    y[:, :, 30:40] += 1.0
    zx, zy = method.segment_latents(x), method.segment_latents(y)
    assert zx.shape == (2, 4, 16)
    assert torch.equal(zx[:, :3], zy[:, :3]) and not torch.allclose(zx[:, 3], zy[:, 3])


def test_cpc_options_are_checked() -> None:
    enc = create_encoder("gru", in_channels=4, hidden=8, num_features=8, mask_channels=2)
    with pytest.raises(ConfigError, match="predict_steps < segments"):
        create_method("cpc", enc, segments=3, predict_steps=3)
    with pytest.raises(ConfigError, match="head sizes"):
        create_method("cpc", enc, context_dim=0)
    with pytest.raises(ConfigError, match="temperature"):
        create_method("cpc", enc, temperature=0.0)
    method = create_method("cpc", enc, segments=8, predict_steps=2)
    with pytest.raises(ConfigError, match="lower method_options.segments"):
        method.training_loss({"view1": torch.rand(4, 4, 5)})


# ------------------------------------------------------- masked_ehr: masked MSE reference and value

def test_masked_value_loss_counts_only_hidden_observed_entries() -> None:
    target = torch.tensor([[[1.0, 2.0, 0.0], [3.0, 0.0, 4.0]]])  # (1, 2, 3)
    hidden = torch.tensor([[[True, False, False], [False, False, True]]])
    pred = torch.zeros(1, 2, 3)
    assert masked_value_loss(pred, target, hidden).item() == pytest.approx((1 + 16) / 2)  # exact value
    moved = pred.clone()
    moved[~hidden] = torch.randn(int((~hidden).sum())) * 100  # anything at visible or unobserved entries
    assert masked_value_loss(moved, target, hidden).item() == pytest.approx(8.5)
    g = torch.Generator().manual_seed(0)
    p, t, h = torch.randn(4, 3, 7, generator=g), torch.randn(4, 3, 7, generator=g), torch.rand(4, 3, 7, generator=g) < 0.3
    ref = np.mean([(p[i] - t[i]).item() ** 2 for i in zip(*np.nonzero(h.numpy()))])
    assert masked_value_loss(p, t, h).item() == pytest.approx(ref, rel=1e-5)
    assert masked_value_loss(p, t, torch.zeros_like(h)).item() == 0.0


def test_hide_observed_hides_only_observed_values_and_their_mask_bits() -> None:
    torch.manual_seed(0)
    mask = (torch.rand(8, 5, 30) > 0.6).float()
    x = torch.cat([torch.randn(8, 5, 30) * mask, mask], dim=1)
    out, hidden = hide_observed(x, 0.5)
    assert hidden.shape == (8, 5, 30) and (mask[hidden] == 1).all()
    assert 0.4 < hidden.sum() / mask.sum() < 0.6
    assert (out[:, :5][hidden] == 0).all() and (out[:, 5:][hidden] == 0).all()
    assert torch.equal(out[:, :5][~hidden], x[:, :5][~hidden]) and torch.equal(out[:, 5:][~hidden], x[:, 5:][~hidden])


def test_masked_ehr_loss_ignores_predictions_off_the_hidden_entries() -> None:
    """Through the method: the gradient of the loss w.r.t. the predicted grid is 0 wherever the
    entry was not hidden (never observed, or observed and left visible)."""
    torch.manual_seed(0)
    method = create_method("masked_ehr", create_encoder("gru", in_channels=6, hidden=8, num_features=8, mask_channels=3))
    mask = (torch.rand(4, 3, 12) > 0.5).float()
    x = torch.cat([torch.randn(4, 3, 12) * mask, mask], dim=1)
    seen: dict[str, torch.Tensor] = {}
    real_predict = method.predict_grid

    def spy(z: torch.Tensor, t: int) -> torch.Tensor:
        seen["pred"] = real_predict(z, t)
        seen["pred"].retain_grad()
        return seen["pred"]

    method.predict_grid = spy  # type: ignore[method-assign]
    torch.manual_seed(1)
    loss = method.training_loss({"view1": x})
    loss.backward()
    torch.manual_seed(1)
    _, hidden = hide_observed(x, method.mask_rate)  # the same draw as inside training_loss
    grad = seen["pred"].grad
    assert hidden.any() and (grad[~hidden] == 0).all() and (grad[hidden] != 0).all()
    assert (mask.bool() | ~hidden).all()


def test_masked_ehr_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="observation masks"):
        create_method("masked_ehr", create_encoder("ts2vec_tcn", in_channels=4, hidden=8, num_features=8, depth=1))
    enc = create_encoder("gru", in_channels=4, hidden=8, num_features=8, mask_channels=2)
    with pytest.raises(ConfigError, match="mask_rate"):
        create_method("masked_ehr", enc, mask_rate=1.0)
    with pytest.raises(ConfigError, match="head sizes"):
        create_method("masked_ehr", enc, hidden_dim=0)


# ------------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def beats(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MIT-BIH DS1 record 106 (N and V beats), ingested."""
    out = tmp_path_factory.mktemp("beats") / "data"
    assert main(["-q", "ingest", "signals", str(shared_data / "signals/mitdb_ds1"), "--format", "wfdb",
                 "--records", "106", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def stays(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 real PhysioNet 2012 stays with outcomes, ingested."""
    root = tmp_path_factory.mktemp("p12")
    src = root / "set-a"
    src.mkdir()
    for f in sorted((shared_data / "ehr/physionet2012/set-a").glob("*.txt"))[:60]:
        shutil.copy(f, src / f.name)
    assert main(["-q", "ingest", "ehr", str(src), "--format", "physionet2012", "--outcomes",
                 str(shared_data / "ehr/physionet2012/Outcomes-a.txt"), "--out", str(root / "data"),
                 "--val-fraction", "0", "--test-fraction", "0.25", "--seed", "0"]) == 0
    return root / "data"


def _cases(data: Path, domain: str, n: int) -> torch.Tensor:
    ds = get_domain(domain).make_dataset(data, read_manifest(data), None)
    rows = np.random.default_rng(0).choice(len(ds), min(n, len(ds)), replace=False)
    return torch.stack([ds[int(i)] for i in rows])


def _loss_falls(method: nn.Module, x: torch.Tensor, steps: int, lr: float) -> tuple[float, float]:
    batch = {"view1": x, "view2": x, "patient": torch.zeros(len(x), dtype=torch.long), "index": torch.arange(len(x))}

    def fixed_loss() -> float:
        torch.manual_seed(123)  # the same hidden entries before and after training
        with torch.no_grad():
            return method.training_loss(batch).item()

    before = fixed_loss()
    opt = torch.optim.AdamW(method.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        method.training_loss(batch).backward()
        opt.step()
    return before, fixed_loss()


def test_cpc_loss_falls_on_real_beats(beats: Path) -> None:
    x = _cases(beats, "signals", 32)
    torch.manual_seed(0)
    enc = create_encoder("ts2vec_tcn", in_channels=x.shape[1], hidden=16, num_features=32, depth=3, dropout=0.0)
    before, after = _loss_falls(create_method("cpc", enc, segments=6, predict_steps=2), x, 15, 3e-3)
    assert math.isfinite(before) and after < 0.8 * before


def test_masked_ehr_loss_falls_on_real_stays(stays: Path) -> None:
    x = _cases(stays, "ehr", 32)
    torch.manual_seed(0)
    enc = create_encoder("gru", in_channels=x.shape[1], hidden=32, num_features=32, mask_channels=x.shape[1] // 2)
    before, after = _loss_falls(create_method("masked_ehr", enc), x, 30, 1e-2)
    assert math.isfinite(before) and after < 0.8 * before


def _pretrain_and_finetune(data: Path, tmp_path: Path, method: str, config: str) -> None:
    (tmp_path / "cfg.yaml").write_text(f"method: {method}\n{config}")
    run = tmp_path / "pre"
    assert main(["-q", "pretrain", "--data", str(data), "--out", str(run), "--config", str(tmp_path / "cfg.yaml"),
                 "--max-steps", "3", "--batch-size", "16", "--limit-cases", "48", "--accelerator", "cpu"]) == 0
    raw = torch.load(run / "checkpoint.pt", weights_only=True)  # plain containers only
    assert raw["kind"] == "encoder" and raw["meta"]["method"] == method and raw["meta"]["global_step"] == 3
    assert main(["-q", "finetune", "--checkpoint", str(run / "checkpoint.pt"), "--data", str(data),
                 "--out", str(tmp_path / "ft"), "--mode", "linear"]) == 0
    assert (tmp_path / "ft" / "model.pt").is_file()


def test_cli_pretrain_cpc_on_beats_then_finetune(beats: Path, tmp_path: Path) -> None:
    _pretrain_and_finetune(beats, tmp_path, "cpc", TINY_TCN + "method_options: {segments: 6, predict_steps: 2}\n")


def test_cli_pretrain_masked_ehr_on_stays_then_finetune(stays: Path, tmp_path: Path) -> None:
    _pretrain_and_finetune(stays, tmp_path, "masked_ehr", TINY_GRU)


def test_masked_ehr_on_signals_is_one_clear_line(beats: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["pretrain", "--data", str(beats), "--out", str(tmp_path / "run"), "--method", "masked_ehr"]) == 2
    err = capsys.readouterr().err.strip()
    assert "method 'masked_ehr' works on ['ehr'] data, not 'signals'" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
