"""Series encoders, augmentations and the ts2vec method (loss reference, exact value, training on real beats)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medssl.checkpoints import load_checkpoint
from medssl.cli import main
from medssl.config import load_config
from medssl.data import get_domain, read_manifest
from medssl.encoders import create_encoder
from medssl.errors import ConfigError
from medssl.methods import create_method
from medssl.methods.ts2vec import hierarchical_contrastive_loss, instance_contrastive_loss, take_per_row
from medssl.train.pretrain_config import PretrainConfig

REPO = Path(__file__).resolve().parents[1]


def _reference_pair_loss(z: np.ndarray, n: int) -> float:
    """Mean over 2n anchors of -log softmax(positive) among the other 2n-1 rows (dot products)."""
    losses = []
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        logits = np.array([z[i] @ z[k] for k in others])
        losses.append(-(z[i] @ z[pos]) + math.log(np.exp(logits).sum()))
    return float(np.mean(losses))


def _reference_hierarchical(z1: np.ndarray, z2: np.ndarray, alpha: float) -> float:
    total, depth = 0.0, 0
    while True:
        b, t, _ = z1.shape
        inst = np.mean([_reference_pair_loss(np.concatenate([z1[:, s], z2[:, s]]), b) for s in range(t)])
        total += alpha * inst
        if t == 1:
            return (total) / (depth + 1)
        temp = np.mean([_reference_pair_loss(np.concatenate([z1[j], z2[j]]), t) for j in range(b)])
        total += (1 - alpha) * temp
        depth += 1
        t2 = t // 2
        z1 = z1[:, : 2 * t2].reshape(b, t2, 2, -1).max(axis=2)
        z2 = z2[:, : 2 * t2].reshape(b, t2, 2, -1).max(axis=2)


def test_ts2vec_loss_exact_value_and_reference() -> None:
    # two orthonormal series, identical crops, one step: each anchor sees its positive (dot 1)
    # and two negatives (dot 0): -log(e / (e + 2)) = log(1 + 2/e)
    z = torch.eye(2)[:, None, :]
    assert hierarchical_contrastive_loss(z, z.clone()).item() == pytest.approx(0.5 * math.log(1 + 2 / math.e), abs=1e-6)
    assert instance_contrastive_loss(z, z.clone()).item() == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    for alpha in (0.5, 0.2):
        ours = hierarchical_contrastive_loss(z1, z2, alpha=alpha).item()
        assert ours == pytest.approx(_reference_hierarchical(z1.numpy().astype(np.float64), z2.numpy().astype(np.float64), alpha), rel=1e-5)


def test_take_per_row() -> None:
    x = torch.arange(2 * 1 * 6, dtype=torch.float32).reshape(2, 1, 6)
    assert take_per_row(x, torch.tensor([0, 3]), 3).tolist() == [[[0, 1, 2]], [[9, 10, 11]]]


@pytest.mark.parametrize("name", ["ts2vec_tcn", "gru"])
def test_sequence_encoders_contract(name: str) -> None:
    torch.manual_seed(0)
    enc = create_encoder(name, in_channels=6, hidden=8, num_features=12, mask_channels=3)
    x = torch.randn(4, 6, 20)
    x[:, 3:] = (torch.rand(4, 3, 20) > 0.5).float()
    seq, pooled = enc.forward_sequence(x), enc(x)
    assert seq.shape == (4, 20, 12) and pooled.shape == (4, 12) and enc.num_features == 12
    seen = x[:, 3:].amax(dim=1) > 0
    reduce = (lambda s, m: s[m].amax(dim=0)) if name == "ts2vec_tcn" else (lambda s, m: s[m].mean(dim=0))
    enc.eval()
    seq, pooled = enc.forward_sequence(x), enc(x)
    for b in range(4):
        torch.testing.assert_close(pooled[b], reduce(seq[b], seen[b]))
    pooled.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


def test_ts2vec_needs_a_sequence_encoder() -> None:
    with pytest.raises(ConfigError, match="forward_sequence"):
        create_method("ts2vec", torch.nn.Linear(3, 3))


def test_series_augment_keeps_masks_binary() -> None:
    torch.manual_seed(0)
    augment = get_domain("ehr").make_augment({"mask_fraction": 0.3, "crop_min": 0.5})
    x = torch.randn(8, 48)
    mask = (torch.rand(4, 48) > 0.5).float()
    x[:4] = x[:4] * mask
    x[4:] = mask
    view = augment(x)
    assert view.shape == (8, 48)
    assert set(view[4:].unique().tolist()) <= {0.0, 1.0}
    assert (view[:4][view[4:] == 0] == 0).all()  # unobserved values stay 0
    with pytest.raises(ConfigError, match="unknown series augment"):
        get_domain("signals").make_augment({"jiter_sigma": 0.1})
    plain = get_domain("signals").make_augment({"jitter_sigma": 0.0, "scale_sigma": 0.0, "mask_fraction": 0.0, "crop_min": 1.0})
    assert torch.equal(plain(x), x)


@pytest.fixture(scope="module")
def beats(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("beats") / "data"
    assert main(["-q", "ingest", "signals", str(shared_data / "signals/mitdb_ds1"), "--format", "wfdb",
                 "--records", "101,106", "--out", str(out)]) == 0
    return out


def test_ts2vec_loss_falls_on_real_beats(beats: Path) -> None:
    m = read_manifest(beats)
    ds = get_domain("signals").make_dataset(beats, m, None)
    rows = np.random.default_rng(0).choice(len(ds), 32, replace=False)
    x = torch.stack([ds[int(i)] for i in rows])[:, :2, ::3]  # the 2 leads (not the RR side channels); 84 steps at 120 Hz keep the test quick
    torch.manual_seed(0)
    enc = create_encoder("ts2vec_tcn", in_channels=2, hidden=16, num_features=32, depth=3, dropout=0.0)
    method = create_method("ts2vec", enc)
    batch = {"view1": x, "view2": x, "patient": torch.zeros(32, dtype=torch.long), "index": torch.arange(32)}

    def fixed_loss() -> float:
        torch.manual_seed(123)  # same crops and masks before and after training
        with torch.no_grad():
            return method.training_loss(batch).item()

    before = fixed_loss()
    opt = torch.optim.AdamW(method.parameters(), lr=3e-3)
    for _ in range(15):
        opt.zero_grad()
        loss = method.training_loss(batch)
        loss.backward()
        opt.step()
    after = fixed_loss()
    assert math.isfinite(before) and after < 0.8 * before


def test_presets_are_valid_configs() -> None:
    names = sorted(p.name for p in (REPO / "configs").glob("*.yaml") if p.name.startswith(("physionet2012_", "mitdb_")))
    assert {"physionet2012_ts2vec.yaml", "mitdb_micle.yaml"} <= set(names)
    for name in names:
        cfg = load_config(PretrainConfig, REPO / "configs" / name)
        method = create_method(cfg.method, create_encoder(cfg.encoder, in_channels=4, **cfg.encoder_options), **cfg.method_options)
        assert method.encoder.num_features == cfg.encoder_options["num_features"]
        get_domain("signals").make_augment(cfg.augment)


def test_pretrain_ts2vec_and_micle_on_beats(beats: Path, tmp_path: Path) -> None:
    for method in ("ts2vec", "micle"):
        run = tmp_path / method
        assert main(["-q", "pretrain", "--data", str(beats), "--out", str(run), "--config", str(REPO / f"configs/mitdb_{method}.yaml"),
                     "--max-steps", "2", "--batch-size", "16", "--limit-cases", "64", "--accelerator", "cpu"]) == 0
        meta = load_checkpoint(run / "checkpoint.pt").meta
        assert (meta["method"], meta["global_step"], meta["n_cases"]) == (method, 2, 64)


def test_nearest_partner_keeps_ectopic_beats_with_their_kind(beats: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Record 106 has hundreds of V beats among normal ones: a random same-record partner of a V beat
    is mostly N; the nearest-in-input-space partner is a V beat of the same record."""
    from medssl.data.pairs import PairDataset
    from medssl.train import pretrain as pretrain_module

    m = read_manifest(beats)
    ds = get_domain("signals").make_dataset(beats, m, None)
    pairs = PairDataset(ds, m["patient_id"], lambda x: x, pairing="patient", partner="nearest", partner_k=5)
    labels, record = m["label"].to_numpy(), m["patient_id"].astype(str).to_numpy()
    v_rows = np.flatnonzero(labels == "V")
    assert len(v_rows) > 100
    nearest = [pairs.nearest_cases(int(i)) for i in v_rows]
    assert all(len(n) == 5 and (record[n.numpy()] == record[i]).all() and i not in n.tolist() for i, n in zip(v_rows, nearest))
    same_kind = np.mean([labels[n[0]] == "V" for n in nearest])
    random_kind = np.mean([(labels[(record == record[i]) & (np.arange(len(m)) != i)] == "V").mean() for i in v_rows])
    assert same_kind > 0.9 and random_kind < 0.5
    # pretrain hands the method's partner options to the pair dataset
    seen: dict[str, object] = {}

    class Spy(PairDataset):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            seen.update(kwargs, pairing=self.pairing)

    monkeypatch.setattr(pretrain_module, "PairDataset", Spy)
    assert main(["-q", "pretrain", "--data", str(beats), "--out", str(tmp_path / "run"), "--config", str(REPO / "configs/mitdb_micle.yaml"),
                 "--max-steps", "1", "--batch-size", "16", "--limit-cases", "64", "--accelerator", "cpu"]) == 0
    assert seen == {"partner": "nearest", "partner_k": 5, "partner_prob": 1.0, "pairing": "patient"}
