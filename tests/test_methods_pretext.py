"""Image pretext methods: simmim, rotation, jigsaw, denoising_ae.

Hand-written references for each loss and view (masked-pixel L1, quarter turns, tile shuffles,
denoising MSE), exact values on tiny tensors, the loss falling on real PneumoniaMNIST images,
and `medssl pretrain` -> `medssl finetune` from the CLI for each method.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medssl.anomaly.reconstruction import ReconstructionScorer
from medssl.cli import main
from medssl.data import get_domain, read_manifest
from medssl.encoders import create_encoder, encoder_example
from medssl.errors import ConfigError
from medssl.methods import create_method
from medssl.methods.base import method_info
from medssl.methods.denoising_ae import observed_mse
from medssl.methods.jigsaw import permutation_set, shuffle_tiles
from medssl.methods.rotation import rotate_batch
from medssl.methods.simmim import masked_l1, patch_mask
from medssl.train.pretrain import pretrain

NPZ = "imaging/pneumoniamnist_trainval.npz"
PRETEXT = ["simmim", "rotation", "jigsaw", "denoising_ae"]


def _batch(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"view1": x, "view2": x, "patient": torch.arange(len(x)), "index": torch.arange(len(x))}


def _method(name: str, **kw: object):
    return create_method(name, create_encoder("small_cnn", in_channels=1, width=8), **kw)


# ---------------------------------------------------------------- simmim


def test_masked_l1_matches_a_hand_written_loop_and_an_exact_value() -> None:
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.zeros(1, 1, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert masked_l1(pred, target, mask).item() == pytest.approx((1 + 4) / 2)  # unmasked 2, 3 ignored
    g = torch.Generator().manual_seed(0)
    p, t = torch.randn(3, 2, 5, 5, generator=g), torch.randn(3, 2, 5, 5, generator=g)
    m = (torch.rand(3, 1, 5, 5, generator=g) > 0.5).float()
    total, count = 0.0, 0
    for b in range(3):
        for c in range(2):
            for i in range(5):
                for j in range(5):
                    if m[b, 0, i, j]:
                        total += abs(p[b, c, i, j].item() - t[b, c, i, j].item())
                        count += 1
    assert masked_l1(p, t, m).item() == pytest.approx(total / count, rel=1e-5)


def test_patch_mask_masks_whole_patches_at_the_ratio() -> None:
    torch.manual_seed(0)
    m = patch_mask(5, (28, 28), 4, 0.6)
    assert m.shape == (5, 1, 28, 28)
    blocks = m.view(5, 7, 4, 7, 4)
    assert (blocks.amax(dim=(2, 4)) == blocks.amin(dim=(2, 4))).all()  # constant inside each 4x4 patch
    assert (blocks[:, :, 0, :, 0].sum(dim=(1, 2)) == 49 - int(49 * 0.4)).all()  # lightly keeps int(n * 0.4)
    assert patch_mask(2, (10, 10), 4, 0.5).shape == (2, 1, 10, 10)  # ceil grid, cropped


def test_simmim_loss_is_masked_l1_of_its_own_reconstruction() -> None:
    method = _method("simmim", fill="mean").eval()
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(3)
    loss = method.training_loss(_batch(x))
    torch.manual_seed(3)
    mask = patch_mask(4, (28, 28), 4, 0.6)
    masked = x * (1 - mask) + x.mean(dim=(1, 2, 3), keepdim=True) * mask
    pred = method.decoder(method.encoder(masked), (28, 28))
    torch.testing.assert_close(loss, masked_l1(pred, x, mask))
    with pytest.raises(ConfigError, match="mask_ratio"):
        _method("simmim", mask_ratio=1.0)
    with pytest.raises(ConfigError, match="fill"):
        _method("simmim", fill="noise")
    with pytest.raises(ConfigError, match="image encoder"):
        create_method("simmim", create_encoder("tabular_mlp", n_numeric=3, cardinalities=[]))


# ---------------------------------------------------------------- rotation


def test_rotate_batch_turns_each_image_by_its_label() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(4, 1, 2, 2)
    out = rotate_batch(x, torch.tensor([0, 1, 2, 3]))
    expected = [[[1, 2], [3, 4]], [[2, 4], [1, 3]], [[4, 3], [2, 1]], [[3, 1], [4, 2]]]  # counter-clockwise
    assert out[:, 0].tolist() == expected


def test_rotation_loss_is_cross_entropy_of_the_applied_turns() -> None:
    method = _method("rotation").eval()
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(1)
    loss = method.training_loss(_batch(x))
    torch.manual_seed(1)
    labels = torch.randint(0, 4, (6,))
    with torch.no_grad():
        logits = method.head(method.encoder(torch.stack([torch.rot90(x[b], int(labels[b]), (1, 2)) for b in range(6)])))
    ref = np.mean([-(logits[b, labels[b]] - torch.logsumexp(logits[b], 0)).item() for b in range(6)])
    assert loss.item() == pytest.approx(ref, rel=1e-5)


# ---------------------------------------------------------------- jigsaw


def test_jigsaw_shuffle_exact_and_inverse_restores_the_image() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)  # tiles 0 [[0,1],[4,5]], 1 [[2,3],[6,7]], 2, 3
    out = shuffle_tiles(x, torch.tensor([[1, 0, 3, 2]]), 2)  # swap left and right halves
    assert out[0, 0].tolist() == [[2, 3, 0, 1], [6, 7, 4, 5], [10, 11, 8, 9], [14, 15, 12, 13]]
    perms = permutation_set(2, 24)
    assert len({tuple(p) for p in perms.tolist()}) == 24 and perms[0].tolist() == [0, 1, 2, 3]
    nine = permutation_set(3, 50)
    assert nine.shape == (50, 9) and len({tuple(p) for p in nine.tolist()}) == 50 and nine[0].tolist() == list(range(9))
    img = torch.rand(5, 2, 28, 28)  # 3x3 tiles of 9 px, one row/column of 28 px stays put
    chosen = nine[torch.tensor([0, 7, 13, 21, 49])]
    shuffled = shuffle_tiles(img, chosen, 3)
    assert not torch.equal(shuffled, img)
    assert torch.equal(shuffled[..., 27, :], img[..., 27, :]) and torch.equal(shuffled[..., :, 27], img[..., :, 27])
    assert torch.equal(shuffle_tiles(shuffled, torch.argsort(chosen, dim=1), 3), img)  # inverse permutation
    with pytest.raises(ConfigError, match="exceeds"):
        _method("jigsaw", num_permutations=25)
    with pytest.raises(ConfigError, match="grid"):
        _method("jigsaw", grid=4)


def test_jigsaw_loss_is_cross_entropy_of_the_permutation_index() -> None:
    method = _method("jigsaw").eval()
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(2)
    loss = method.training_loss(_batch(x))
    torch.manual_seed(2)
    labels = torch.randint(0, 24, (6,))
    with torch.no_grad():
        logits = method.head(method.encoder(shuffle_tiles(x, method.perms[labels], 2)))
    ref = np.mean([math.log(np.exp(logits[b].numpy().astype(np.float64)).sum()) - logits[b, labels[b]].item() for b in range(6)])
    assert loss.item() == pytest.approx(ref, rel=1e-5)


# ---------------------------------------------------------------- denoising_ae


def test_denoising_loss_exact_value_and_anomaly_scorer_hook() -> None:
    method = _method("denoising_ae", noise_std=0.0, mask_rate=0.5).eval()
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(4)
    loss = method.training_loss(_batch(x))
    torch.manual_seed(4)
    keep = (torch.rand(4, 1, 28, 28) >= 0.5).float()
    torch.manual_seed(4)
    assert torch.equal(method.corrupt(x), x * keep)  # whole pixels blanked, nothing else touched
    pred = method.decoder(method.encoder(x * keep), (28, 28))
    assert loss.item() == pytest.approx(((pred - x) ** 2).mean().item(), rel=1e-5)
    noisy = _method("denoising_ae", noise_std=0.1)
    torch.manual_seed(5)
    corrupted = noisy.corrupt(x)
    torch.manual_seed(5)
    torch.testing.assert_close(corrupted, x + 0.1 * torch.randn_like(x))
    with torch.no_grad():
        method.decoder.up[-1].weight.zero_()
        method.decoder.up[-1].bias.fill_(0.25)  # the decoder now paints every pixel 0.25
    flat = torch.full((2, 1, 28, 28), 0.75)
    assert method.reconstruction_error(flat).tolist() == pytest.approx([0.25, 0.25])  # (0.75 - 0.25)^2
    scorer = ReconstructionScorer(reconstruct=method.reconstruct_flat((1, 28, 28)), normalize="none")
    scorer.fit(x.flatten(1).numpy().astype(np.float64))
    scores = scorer.score(torch.cat([flat, torch.full((1, 1, 28, 28), 0.25)]).flatten(1).numpy().astype(np.float64))
    assert scores[0] > scores[2] and scores[2] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ConfigError, match="nothing is corrupted"):
        _method("denoising_ae", noise_std=0.0)


def test_observed_mse_matches_a_hand_written_loop_and_an_exact_value() -> None:
    pred, values = torch.tensor([[[1.0, 3.0]]]), torch.zeros(1, 1, 2)
    assert observed_mse(pred, values, torch.tensor([[[0.0, 1.0]]])).item() == pytest.approx(9.0)  # only step 2
    assert observed_mse(pred, values, None).item() == pytest.approx(5.0)
    g = torch.Generator().manual_seed(0)
    p, v = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    m = (torch.rand(2, 3, 7, generator=g) > 0.4).float()
    errs = [(p[b, c, t].item() - v[b, c, t].item()) ** 2 for b in range(2) for c in range(3) for t in range(7) if m[b, c, t]]
    assert observed_mse(p, v, m).item() == pytest.approx(sum(errs) / len(errs), rel=1e-5)


def test_denoising_on_an_ehr_grid_rebuilds_observed_values_only() -> None:
    ex = encoder_example("gru")  # 3 value channels + 3 observation masks
    method = create_method("denoising_ae", create_encoder("gru", **ex.kwargs), noise_std=0.5).eval()
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(4, 3, 24, generator=g) > 0.5).float()
    x = torch.cat([torch.randn(4, 3, 24, generator=g) * masks, masks], dim=1)
    torch.manual_seed(6)
    corrupted = method.corrupt(x)
    assert torch.equal(corrupted[:, 3:], masks) and not torch.equal(corrupted[:, :3], x[:, :3])  # masks kept
    torch.manual_seed(6)
    loss = method.training_loss(_batch(x))
    pred = method.decoder(method.encoder(corrupted), 24)
    assert pred.shape == (4, 3, 24)
    assert loss.item() == pytest.approx(observed_mse(pred, x[:, :3], masks).item(), rel=1e-5)
    assert method.reconstruction_error(x).shape == (4,)
    assert method.decoder(torch.randn(2, method.encoder.num_features), 100).shape == (2, 3, 100)


# ---------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_images(shared_data: Path) -> torch.Tensor:
    """64 real PneumoniaMNIST train images ``(64, 1, 28, 28)`` in [0, 1]."""
    arr = np.load(shared_data / NPZ)["train_images"][:64]
    return torch.from_numpy(arr.astype(np.float32) / 255.0)[:, None]


@pytest.mark.parametrize("name", PRETEXT)
def test_loss_falls_on_real_images(name: str, real_images: torch.Tensor) -> None:
    torch.manual_seed(0)
    method = _method(name)
    opt = torch.optim.Adam(method.parameters(), lr=3e-3)
    losses = []
    for step in range(20):
        x = real_images[(step % 4) * 16: (step % 4) * 16 + 16]
        loss = method.training_loss(_batch(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses


def test_methods_describe_themselves() -> None:
    rows = {r["name"]: r for r in method_info()}
    for name in PRETEXT:
        assert rows[name]["family"] and rows[name]["summary"]
    assert [rows[n]["domains"] for n in PRETEXT] == ["imaging"] * 3 + ["imaging, signals, ehr"]
    assert "random_token_mask" in rows["simmim"]["lightly_parts"]


@pytest.fixture(scope="module")
def image_data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 train + 40 val real images (both classes in each), ingested through the CLI."""
    real = np.load(shared_data / NPZ)
    tmp = tmp_path_factory.mktemp("pretext")
    cut = tmp / "cut.npz"
    ty, vy = real["train_labels"].ravel(), real["val_labels"].ravel()
    tr = np.sort(np.concatenate([np.flatnonzero(ty == c)[:48] for c in (0, 1)]))  # both classes
    va = np.sort(np.concatenate([np.flatnonzero(vy == c)[:20] for c in (0, 1)]))
    np.savez(cut, train_images=real["train_images"][tr], train_labels=real["train_labels"][tr],
             val_images=real["val_images"][va], val_labels=real["val_labels"][va])
    assert main(["-q", "ingest", "images", "--format", "npz", str(cut), "--out", str(tmp / "data")]) == 0
    return tmp / "data"


@pytest.mark.parametrize("name", PRETEXT)
def test_cli_pretrain_then_finetune(name: str, image_data: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"method": name, "encoder_options": {"width": 8}, "num_workers": 0}))
    run = tmp_path / "pre"
    assert main(["-q", "pretrain", "--data", str(image_data), "--out", str(run), "--config", str(cfg),
                 "--max-steps", "2", "--batch-size", "16", "--limit-cases", "64", "--accelerator", "cpu"]) == 0
    raw = torch.load(run / "checkpoint.pt", weights_only=True)
    assert raw["kind"] == "encoder" and raw["meta"]["method"] == name
    assert main(["-q", "finetune", "--checkpoint", str(run / "checkpoint.pt"), "--data", str(image_data),
                 "--out", str(tmp_path / "ft"), "--label-fraction", "0.5", "--mode", "linear"]) == 0
    assert (tmp_path / "ft" / "model.pt").is_file()


@pytest.fixture(scope="module")
def beats(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real MIT-BIH beats of record 101, ingested."""
    out = tmp_path_factory.mktemp("beats") / "data"
    assert main(["-q", "ingest", "signals", str(shared_data / "signals/mitdb_ds1"), "--format", "wfdb",
                 "--records", "101", "--out", str(out)]) == 0
    return out


def test_denoising_loss_falls_on_real_beats(beats: Path) -> None:
    m = read_manifest(beats)
    ds = get_domain("signals").make_dataset(beats, m, None)
    x = torch.stack([ds[int(i)] for i in np.random.default_rng(0).choice(len(ds), 16, replace=False)])[:, :, ::3]
    torch.manual_seed(0)
    enc = create_encoder("ts2vec_tcn", in_channels=x.shape[1], hidden=16, num_features=32, depth=3)
    method = create_method("denoising_ae", enc, decoder_dim=32)
    opt = torch.optim.Adam(method.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = method.training_loss(_batch(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_cli_pretrain_denoising_on_beats(beats: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"method": "denoising_ae", "num_workers": 0, "method_options": {"decoder_dim": 16}}))
    run = tmp_path / "pre"
    assert main(["-q", "pretrain", "--data", str(beats), "--out", str(run), "--config", str(cfg),
                 "--max-steps", "2", "--batch-size", "16", "--limit-cases", "64", "--accelerator", "cpu"]) == 0
    raw = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (raw["meta"]["method"], raw["meta"]["domain"]) == ("denoising_ae", "signals")


def test_pretext_method_on_series_data_is_one_clear_error(beats: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"method 'simmim' works on \['imaging'\] data, not 'signals'"):
        pretrain(beats, tmp_path / "run", {"method": "simmim", "accelerator": "cpu"})
