"""Semi-supervised fine-tuning (``--unlabelled fixmatch | distill``) on real PneumoniaMNIST images and real ECG beats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medssl.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from medssl.cli import main
from medssl.data import get_domain, read_manifest
from medssl.encoders import create_encoder
from medssl.train.classifier import fit_classifier
from medssl.train.distill import teacher_targets
from medssl.train.finetune_config import FinetuneConfig
from medssl.train.finetune_data import FinetuneData, load_data
from medssl.train.fixmatch import FixMatchModule
from medssl.train.semi_supervised import unlabelled_rows

ENCODER = {"name": "small_cnn", "kwargs": {"in_channels": 1, "width": 8}}
AUGMENT = {"crop_scale": [0.3, 1.0], "blur_prob": 0.0}  # stored in the checkpoint as pretraining options


@pytest.fixture(scope="module")
def data_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 train (40 normal, 80 pneumonia) + 80 val real images, ingested with `medssl ingest`."""
    root = tmp_path_factory.mktemp("semi")
    with np.load(shared_data / "imaging" / "pneumoniamnist_trainval.npz") as z:
        ty, vy = z["train_labels"].ravel(), z["val_labels"].ravel()
        tr = np.concatenate([np.flatnonzero(ty == 0)[:40], np.flatnonzero(ty == 1)[:80]])
        va = np.concatenate([np.flatnonzero(vy == 0)[:30], np.flatnonzero(vy == 1)[:50]])
        np.savez(root / "pneu.npz", train_images=z["train_images"][tr], train_labels=z["train_labels"][tr],
                 val_images=z["val_images"][va], val_labels=z["val_labels"][va])
    assert main(["-q", "ingest", "images", str(root / "pneu.npz"), "--format", "npz", "--out", str(root / "data")]) == 0
    return root / "data"


@pytest.fixture(scope="module")
def encoder_ckpt(data_dir: Path) -> Path:
    """A real small_cnn (random weights, BatchNorm statistics of the data) saved as kind "encoder",
    with pretraining augment options in its config as `medssl pretrain` writes them."""
    dataset = get_domain("imaging").make_dataset(data_dir, read_manifest(data_dir), None)
    torch.manual_seed(0)
    encoder = create_encoder(ENCODER["name"], **ENCODER["kwargs"])
    with torch.no_grad():
        encoder.train()
        for _ in range(20):
            encoder(torch.stack([dataset[i] for i in range(0, len(dataset), 2)]))
    meta = {"encoder": ENCODER, "domain": "imaging", "preprocessing": dataset.preprocessing, "method": "none",
            "config": {"augment": AUGMENT}}
    return save_checkpoint(data_dir.parent / "enc.pt", Checkpoint("encoder", meta, {"encoder": encoder.state_dict()}))


def _finetune(ckpt: Path, data_dir: Path, out: Path, *extra: str) -> dict:
    assert main(["-q", "finetune", "--checkpoint", str(ckpt), "--data", str(data_dir), "--out", str(out), *extra]) == 0
    return load_checkpoint(out / "model.pt", expect_kind="model").meta


def _encoder_changed(model: Path, ckpt: Path) -> bool:
    after, before = load_checkpoint(model).states["encoder"], load_checkpoint(ckpt).states["encoder"]
    return any(not torch.equal(after[k], before[k]) for k in before if before[k].is_floating_point())


def test_fixmatch_cli_trains_encoder_on_labelled_plus_unlabelled_train_cases(encoder_ckpt: Path, data_dir: Path,
                                                                               tmp_path: Path) -> None:
    meta = _finetune(encoder_ckpt, data_dir, tmp_path / "fm", "--shots", "5", "--unlabelled", "fixmatch", "--epochs", "2")
    assert meta["mode"] == "full" and meta["config"]["unlabelled"] == "fixmatch"  # auto -> full for fixmatch
    log = json.loads((tmp_path / "fm" / "metrics.json").read_text())["training"]
    assert log["n_unlabelled"] == 110 and log["n_train"] == 10  # 120 train images minus the 10 labelled; val never
    assert log["epochs_run"] == 2 and all(0.0 <= h["pseudo_label_rate"] <= 1.0 for h in log["history"])
    assert meta["metrics"]["n"] == 80 and 0.0 <= meta["metrics"]["auroc"] <= 1.0
    assert _encoder_changed(tmp_path / "fm" / "model.pt", encoder_ckpt)


def test_distill_cli_student_learns_from_the_linear_teacher(encoder_ckpt: Path, data_dir: Path, tmp_path: Path) -> None:
    meta = _finetune(encoder_ckpt, data_dir, tmp_path / "ds", "--shots", "5", "--unlabelled", "distill", "--epochs", "1")
    assert meta["mode"] == "linear" and meta["config"]["unlabelled"] == "distill"  # auto -> the linear probe teaches
    log = json.loads((tmp_path / "ds" / "metrics.json").read_text())["training"]
    assert log["n_unlabelled"] == 110 and log["epochs_run"] == 1
    shares = log["teacher_class_shares"]
    assert len(shares) == 2 and sum(shares) == pytest.approx(1.0, abs=1e-3)
    assert _encoder_changed(tmp_path / "ds" / "model.pt", encoder_ckpt)  # the student is trained end to end
    report = tmp_path / "rep.json"
    assert main(["-q", "evaluate", "--model", str(tmp_path / "ds" / "model.pt"), "--data", str(data_dir),
                 "--out", str(report), "--bootstrap", "50"]) == 0
    assert json.loads(report.read_text())["n"] == 80


def test_unlabelled_rows_are_train_cases_outside_the_labelled_and_held_out_rows(encoder_ckpt: Path, data_dir: Path) -> None:
    data = load_data(encoder_ckpt, data_dir)
    train = np.flatnonzero(data.split == "train")
    rows = unlabelled_rows(data, train[:7], train[7:12])
    assert rows.tolist() == train[12:].tolist()
    assert not np.isin(rows, np.flatnonzero(data.split == "val")).any()


def test_semi_supervised_settings_that_cannot_work_are_one_clear_line(encoder_ckpt: Path, data_dir: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    for mode, unl, message in (("knn", "fixmatch", "fixmatch trains the encoder"),
                               ("linear", "fixmatch", "fixmatch trains the encoder"),
                               ("knn", "distill", "distill needs a linear or full teacher")):
        assert main(["finetune", "--checkpoint", str(encoder_ckpt), "--data", str(data_dir), "--out", str(tmp_path / mode),
                     "--mode", mode, "--unlabelled", unl]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[-1]


def test_fixmatch_loss_is_supervised_plus_masked_pseudo_label_loss() -> None:
    """Exact value on a hand-made model: logits are the input itself (identity encoder + head)."""
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    enc = nn.Identity()
    module = FixMatchModule(enc, head, nn.CrossEntropyLoss(), 1e-4, 1e-3, 0.0, False, threshold=0.9, weight=2.0)
    x, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    weak = torch.tensor([[5.0, 0.0], [0.1, 0.0]])  # confident class 0 (p = 0.993), not confident (p = 0.525)
    strong = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    loss = module.training_step({"x": (x, y), "u": (weak, strong)}, 0)
    ce = torch.nn.functional.cross_entropy
    expected = ce(x, y) + 2.0 * (ce(strong[:1], torch.tensor([0])) * 1 + 0) / 2  # mean over both unlabelled cases
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_distill_targets_are_the_teachers_softened_probabilities(encoder_ckpt: Path, data_dir: Path) -> None:
    data = load_data(encoder_ckpt, data_dir)
    enc = create_encoder(ENCODER["name"], **ENCODER["kwargs"])
    enc.load_state_dict(data.checkpoint.states["encoder"])
    enc.eval()
    torch.manual_seed(0)
    head = nn.Linear(enc.num_features, 2)
    rows = np.arange(6)
    with torch.no_grad():
        logits = head(enc(torch.stack([data.dataset[int(i)] for i in rows])))
    for t in (1.0, 4.0):
        got = teacher_targets(enc, head, data.dataset, rows, t, torch.device("cpu"))
        assert got.shape == (6, 2)
        np.testing.assert_allclose(got, torch.softmax(logits / t, 1).numpy(), atol=1e-5)
    assert np.abs(teacher_targets(enc, head, data.dataset, rows, 4.0, torch.device("cpu")) - 0.5).max() < \
        np.abs(teacher_targets(enc, head, data.dataset, rows, 1.0, torch.device("cpu")) - 0.5).max()  # softer


def test_label_efficiency_runs_the_semi_supervised_curves(encoder_ckpt: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "curve"
    assert main(["-q", "label-efficiency", "--checkpoint", str(encoder_ckpt), "--data", str(data_dir), "--out", str(out),
                 "--fractions", "0.25", "--seeds", "0", "--modes", "fixmatch,distill", "--epochs", "1",
                 "--supervised-unlabelled", "fixmatch"]) == 0
    table = json.loads((out / "label_efficiency.json").read_text())["runs"]
    assert sorted(r["method"] for r in table) == ["ssl_distill", "ssl_fixmatch", "supervised", "supervised_fixmatch"]
    assert all(0.0 <= r["auroc"] <= 1.0 for r in table)


@pytest.fixture(scope="module")
def beats(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("beats") / "data"
    assert main(["-q", "ingest", "signals", str(shared_data / "signals/mitdb_ds1"), "--format", "wfdb",
                 "--records", "101,106", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("unlabelled", ["fixmatch", "distill"])
def test_semi_supervised_on_ecg_beats(beats: Path, unlabelled: str) -> None:
    """Series: 160 real beats of records 101 and 106 (80 N, 80 V), 20 of each class labelled, the rest unlabelled."""
    manifest = read_manifest(beats)
    keep = np.concatenate([np.flatnonzero((manifest["label"] == c).to_numpy())[:80] for c in ("N", "V")])
    manifest = manifest.iloc[keep].reset_index(drop=True)
    dataset = get_domain("signals").make_dataset(beats, manifest, None)
    name = get_domain("signals").encoder_for(dataset.preprocessing)
    kwargs = get_domain("signals").encoder_kwargs(dataset)
    torch.manual_seed(0)
    encoder = create_encoder(name, **kwargs)
    meta = {"encoder": {"name": name, "kwargs": kwargs}, "domain": "signals", "preprocessing": dataset.preprocessing,
            "config": {"augment": {}}}
    ckpt = Checkpoint("encoder", meta, {"encoder": encoder.state_dict()})
    labels = manifest["label"].astype(object).to_numpy()
    data = FinetuneData(ckpt, manifest, dataset, labels, manifest["patient_id"].astype(str).to_numpy(), None, "manifest")
    pick = np.concatenate([np.arange(20), 80 + np.arange(20)])
    cfg = FinetuneConfig(mode="full" if unlabelled == "fixmatch" else "linear", unlabelled=unlabelled, epochs=1,
                         unlabelled_batch_size=32, batch_size=16, min_holdout_per_class=100)
    result = fit_classifier(data, pick, np.zeros(0, dtype=np.int64), cfg)
    assert result.train_log["n_unlabelled"] == 120 and result.train_log["epochs_run"] == 1
    assert result.head.weight.shape == (2, encoder.num_features)
    changed = any(not torch.equal(v, encoder.state_dict()[k]) for k, v in result.encoder.state_dict().items()
                  if v.is_floating_point())
    assert changed
