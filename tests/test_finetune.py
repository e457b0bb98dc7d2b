"""Fine-tune -> model file -> evaluate, end to end through the CLI on real PneumoniaMNIST images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from medssl.cli import main
from medssl.data import get_domain, read_manifest
from medssl.encoders import create_encoder
from medssl.models import load_model

ENCODER = {"name": "small_cnn", "kwargs": {"in_channels": 1, "width": 8}}


@pytest.fixture(scope="module")
def data_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 train (40 normal, 80 pneumonia) + 80 val real images, ingested with `medssl ingest`."""
    root = tmp_path_factory.mktemp("ft")
    with np.load(shared_data / "imaging" / "pneumoniamnist_trainval.npz") as z:
        ty, vy = z["train_labels"].ravel(), z["val_labels"].ravel()
        tr = np.concatenate([np.flatnonzero(ty == 0)[:40], np.flatnonzero(ty == 1)[:80]])
        va = np.concatenate([np.flatnonzero(vy == 0)[:30], np.flatnonzero(vy == 1)[:50]])
        np.savez(root / "pneu.npz", train_images=z["train_images"][tr], train_labels=z["train_labels"][tr],
                 val_images=z["val_images"][va], val_labels=z["val_labels"][va])
    assert main(["ingest", "images", str(root / "pneu.npz"), "--format", "npz", "--out", str(root / "data")]) == 0
    return root / "data"


@pytest.fixture(scope="module")
def encoder_ckpt(data_dir: Path) -> Path:
    """A real small_cnn (random weights, BatchNorm statistics of the data) saved as kind "encoder"."""
    manifest = read_manifest(data_dir)
    dataset = get_domain("imaging").make_dataset(data_dir, manifest, None)
    torch.manual_seed(0)
    encoder = create_encoder(ENCODER["name"], **ENCODER["kwargs"])
    with torch.no_grad():  # running BN statistics of the data, as a pretrained encoder has
        encoder.train()
        for _ in range(20):
            encoder(torch.stack([dataset[i] for i in range(0, len(dataset), 2)]))
    meta = {"encoder": ENCODER, "domain": "imaging", "preprocessing": dataset.preprocessing, "method": "none"}
    return save_checkpoint(data_dir.parent / "enc.pt", Checkpoint("encoder", meta, {"encoder": encoder.state_dict()}))


def _finetune(ckpt: Path, data_dir: Path, out: Path, *extra: str) -> Path:
    assert main(["-q", "finetune", "--checkpoint", str(ckpt), "--data", str(data_dir), "--out", str(out), *extra]) == 0
    return out / "model.pt"


def _evaluate(model: Path, data_dir: Path, out: Path, *extra: str) -> dict:
    assert main(["-q", "evaluate", "--model", str(model), "--data", str(data_dir), "--out", str(out),
                 "--bootstrap", "200", *extra]) == 0
    return json.loads(out.read_text())


def test_linear_finetune_model_file_and_evaluate(encoder_ckpt: Path, data_dir: Path, tmp_path: Path) -> None:
    model_path = _finetune(encoder_ckpt, data_dir, tmp_path / "run", "--label-fraction", "0.25", "--seed", "1",
                           "--mode", "linear")
    ckpt = load_checkpoint(model_path, expect_kind="model")
    assert set(ckpt.states) == {"encoder", "head"}
    assert ckpt.states["head"]["weight"].shape == (2, 32)  # nn.Linear(num_features, n_classes)
    assert torch.equal(ckpt.states["encoder"]["features.0.0.weight"],
                       load_checkpoint(encoder_ckpt).states["encoder"]["features.0.0.weight"])  # frozen
    meta = ckpt.meta
    assert meta["classes"] == ["0", "1"] and meta["mode"] == "linear" and meta["seed"] == 1
    assert meta["n_labelled"] == 30 and meta["label_source"] == "manifest"
    assert meta["encoder"] == ENCODER and meta["domain"] == "imaging"
    assert meta["metrics"]["n"] == 80 and meta["validation"] == "val"  # the manifest's val split
    assert meta["scorer"]["name"] == "knn" and any(k.startswith("scorer/") for k in ckpt.tensors)
    assert load_model(model_path).scorer.score(torch.zeros(1, 32)).shape == (1,)
    assert (tmp_path / "run" / "config.yaml").read_text().startswith("mode: linear")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n_labelled"] == 30

    report = _evaluate(model_path, data_dir, tmp_path / "rep" / "report.json")
    assert report["n"] == 80 and report["split"] == "val" and "caution" not in report
    assert report["metrics"]["per_class"]["0"]["support"] == 30
    assert report["metrics"]["auroc"] == pytest.approx(meta["metrics"]["auroc"])
    lo, hi = report["ci95"]["auroc"]
    assert lo <= report["metrics"]["auroc"] <= hi
    for png in ("report.roc.png", "report.pr.png", "report.confusion.png"):  # named after report.json
        assert (tmp_path / "rep" / png).stat().st_size > 1000


def test_perfect_and_random_labels_give_auroc_1_and_half(encoder_ckpt: Path, data_dir: Path, tmp_path: Path) -> None:
    """Labels built from the model's own scores are ranked perfectly; labels drawn at random are not."""
    model_path = _finetune(encoder_ckpt, data_dir, tmp_path / "run", "--shots", "10")
    model = load_model(model_path)
    manifest = read_manifest(data_dir)
    val = manifest[manifest.split == "val"].reset_index(drop=True)
    proba = model.predict_proba(get_domain("imaging").make_dataset(data_dir, val, model.meta["preprocessing"]))
    perfect = np.where(proba[:, 1] > np.median(proba[:, 1]), "1", "0")
    pd.DataFrame({"case_id": val.case_id, "label": perfect}).to_csv(tmp_path / "perfect.csv", index=False)
    report = _evaluate(model_path, data_dir, tmp_path / "p.json", "--labels", str(tmp_path / "perfect.csv"))
    assert report["metrics"]["auroc"] == 1.0 and report["ci95"]["auroc"] == pytest.approx([1.0, 1.0])
    aucs = []
    for seed in range(5):
        rand = np.random.default_rng(seed).permutation(perfect)
        pd.DataFrame({"case_id": val.case_id, "label": rand}).to_csv(tmp_path / "r.csv", index=False)
        aucs.append(_evaluate(model_path, data_dir, tmp_path / "r.json", "--labels", str(tmp_path / "r.csv"))["metrics"]["auroc"])
    assert abs(np.mean(aucs) - 0.5) < 0.08 and max(aucs) < 0.75


def test_knn_model_evaluates_and_can_be_finetuned_again(encoder_ckpt: Path, data_dir: Path, tmp_path: Path) -> None:
    knn_path = _finetune(encoder_ckpt, data_dir, tmp_path / "knn", "--mode", "knn", "--shots", "15")
    ckpt = load_checkpoint(knn_path)
    assert ckpt.tensors["knn/embeddings"].shape == (30, 32) and ckpt.meta["knn"]["k"] == 20
    report = _evaluate(knn_path, data_dir, tmp_path / "knn.json")
    assert report["mode"] == "knn" and ckpt.meta["classes"] == ["0", "1"]
    # independent recomputation of the val AUROC: embed the val images with the model's encoder, then a
    # by-hand vote of the k=20 nearest stored embeddings (cosine distance, weights 1/distance) divided by
    # each class's share of the labelled cases, scored with scikit-learn
    from sklearn.metrics import roc_auc_score

    manifest = read_manifest(data_dir)
    val = manifest[manifest["split"] == "val"].reset_index(drop=True)
    dataset = get_domain("imaging").make_dataset(data_dir, val, None)
    with torch.no_grad():
        query = load_model(knn_path).encoder.eval()(torch.stack([dataset[i] for i in range(len(val))])).double().numpy()
    ref, y = ckpt.tensors["knn/embeddings"].double().numpy(), ckpt.tensors["knn/labels"].numpy()
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    dist = 1.0 - unit(query) @ unit(ref).T
    nearest = np.argsort(dist, axis=1)[:, :20]
    weight = 1.0 / np.take_along_axis(dist, nearest, axis=1)
    vote = np.stack([(weight * (y[nearest] == c)).sum(axis=1) for c in (0, 1)], axis=1) / (np.bincount(y) / len(y))
    expected = roc_auc_score(val["label"].astype(str) == "1", vote[:, 1] / vote.sum(axis=1))
    assert report["n"] == 80 and report["metrics"]["auroc"] == pytest.approx(expected, abs=1e-9)
    again = _finetune(knn_path, data_dir, tmp_path / "again", "--mode", "linear", "--label-fraction", "0.5")
    meta = load_checkpoint(again).meta
    assert meta["source_checkpoint"]["kind"] == "model" and meta["n_labelled"] == 60
    assert _evaluate(again, data_dir, tmp_path / "again.json")["n"] == 80


def test_linear_with_label_spreading_uses_the_unlabelled_train_cases(encoder_ckpt: Path, data_dir: Path, tmp_path: Path,
                                                                     capsys) -> None:
    model_path = _finetune(encoder_ckpt, data_dir, tmp_path / "sp", "--shots", "5", "--unlabelled", "spread")
    meta = load_checkpoint(model_path).meta
    assert meta["config"]["unlabelled"] == "spread" and meta["n_labelled"] == 10 and meta["validation"] == "val"
    log = json.loads((tmp_path / "sp" / "metrics.json").read_text())["training"]
    assert log["n_unlabelled"] == 110 and sum(log["spread_class_counts"]) == 110  # train split minus the 10 labelled
    assert min(log["spread_class_counts"]) > 0
    assert "unlabelled: spread" in (tmp_path / "sp" / "config.yaml").read_text()
    assert _evaluate(model_path, data_dir, tmp_path / "sp.json")["n"] == 80
    capsys.readouterr()
    assert main(["finetune", "--checkpoint", str(encoder_ckpt), "--data", str(data_dir), "--out", str(tmp_path / "bad"),
                 "--mode", "full", "--unlabelled", "spread"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unlabelled: spread works with mode linear" in err[-1]


def test_full_finetune_trains_encoder_with_early_stopping_log(encoder_ckpt: Path, data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "ft.yaml").write_text("min_steps_per_epoch: 2\nbatch_size: 32\npatience: 2\n")
    model_path = _finetune(encoder_ckpt, data_dir, tmp_path / "full", "--mode", "full", "--epochs", "3",
                           "--label-fraction", "0.5", "--config", str(tmp_path / "ft.yaml"))
    after = load_checkpoint(model_path).states["encoder"]["features.0.0.weight"]
    before = load_checkpoint(encoder_ckpt).states["encoder"]["features.0.0.weight"]
    assert not torch.equal(after, before)
    log = json.loads((tmp_path / "full" / "metrics.json").read_text())["training"]
    assert 1 <= log["epochs_run"] <= 3 and 1 <= log["best_epoch"] <= log["epochs_run"]
    assert log["n_train"] == 60 and log["n_val"] == 80 and log["validation"] == "val"
    report = _evaluate(model_path, data_dir, tmp_path / "full.json")
    assert "early-stopping" in report["caution"]  # val chose the epoch: the report says so
    assert all(np.isfinite(h["train_loss"]) for h in log["history"])


@pytest.mark.parametrize(
    "csv_text, extra, message",
    [
        ("case_id,label\nnot-a-case,1\n", [], "not in the manifest"),
        ("id,label\ntrain:0,1\n", [], "neither a case_id nor a patient_id"),
        ("case_id,label\ntrain:0,1\ntrain:1,\n", [], "missing label"),
        ("case_id,label\ntrain:0,1\ntrain:1,1\n", [], "single class"),
        (None, ["--shots", "41"], "fewer for class"),
    ],
)
def test_bad_labels_give_clear_nonzero_exit(encoder_ckpt: Path, data_dir: Path, tmp_path: Path, capsys,
                                            csv_text: str | None, extra: list[str], message: str) -> None:
    args = ["finetune", "--checkpoint", str(encoder_ckpt), "--data", str(data_dir), "--out", str(tmp_path / "r"), *extra]
    if csv_text is not None:
        (tmp_path / "l.csv").write_text(csv_text)
        args += ["--labels", str(tmp_path / "l.csv")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medssl: error:") and message in err[0]
    assert not (tmp_path / "r" / "model.pt").exists()



@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("mode: knn\nknn_k: 0\n", "knn_k: Input should be greater than or equal to 1"),
        ("mode: full\nbatch_size: 0\n", "batch_size: Input should be greater than or equal to 1"),
        ("scorer: knnn\n", "unknown anomaly scorer 'knnn'. Did you mean 'knn'?"),
        ("device: gpux\n", "unknown device 'gpux'"),
        ("mode: full\nval_fraction: 1.5\n", "val_fraction: Input should be less than 1"),
        ("mode: full\nepochs: 0\n", "epochs: Input should be greater than or equal to 1"),
        ("lr_head: -0.1\n", "lr_head: Input should be greater than 0"),
        ("mode: linear\nlabelled_views: true\n", "labelled_views trains the encoder on augmented labelled cases"),
    ],
)
def test_bad_config_values_give_one_clear_line(encoder_ckpt: Path, data_dir: Path, tmp_path: Path, capsys,
                                               yaml_text: str, message: str) -> None:
    (tmp_path / "c.yaml").write_text(yaml_text)
    assert main(["finetune", "--checkpoint", str(encoder_ckpt), "--data", str(data_dir), "--out", str(tmp_path / "r"),
                 "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medssl: error:") and message in err[0]
    assert not (tmp_path / "r" / "model.pt").exists()

def test_label_efficiency_curve_files(encoder_ckpt: Path, data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "ft.yaml").write_text("min_steps_per_epoch: 2\nbatch_size: 32\n")
    out = tmp_path / "curve"
    assert main(["-q", "label-efficiency", "--checkpoint", str(encoder_ckpt), "--data", str(data_dir), "--out", str(out),
                 "--fractions", "0.25,1.0", "--seeds", "0", "--modes", "linear,knn,spread", "--epochs", "1",
                 "--config", str(tmp_path / "ft.yaml")]) == 0
    table = pd.read_csv(out / "label_efficiency.csv")
    assert sorted(table.method.unique()) == ["ssl_knn", "ssl_label_spreading", "ssl_linear", "supervised"]
    assert table.groupby("fraction").n_labelled.first().to_dict() == {0.25: 30, 1.0: 120}
    assert table.auroc.between(0, 1).all() and (table.loc[table.method == "supervised", "epochs_run"] == 1).all()
    payload = json.loads((out / "label_efficiency.json").read_text())
    assert payload["eval_split"] == "val" and payload["n_eval"] == 80 and len(payload["summary"]) == 8
    assert (out / "label_efficiency.png").stat().st_size > 1000
    assert main(["label-efficiency", "--checkpoint", str(encoder_ckpt), "--data", str(data_dir), "--out", str(out),
                 "--fractions", "0.001"]) == 2  # 0.1% of 120 cases is below one per class


@pytest.mark.parametrize("init", ["pretrained", "random"])
def test_too_small_holdout_trains_every_labelled_case_for_the_fixed_budget(encoder_ckpt: Path, data_dir: Path, init: str) -> None:
    from medssl.train.finetune import FinetuneConfig, fit_classifier, load_data
    from medssl.train.labels import draw_labelled_subset

    data = load_data(encoder_ckpt, data_dir)
    subset = draw_labelled_subset(data.patient_ids, data.labels, pool=data.train_pool(), fraction=0.2, seed=0)
    assert len(subset) == 24  # 8 normal + 16 pneumonia: a 20% hold-out keeps ~2 normal cases
    base = FinetuneConfig(mode="full", init=init, epochs=2, min_steps_per_epoch=2, batch_size=16, scorer=None)
    small = fit_classifier(data, subset, np.zeros(0, dtype=np.int64), base)  # no val rows given: hold out or not
    assert small.train_log["validation"].startswith("none") and small.train_log["n_train"] == 24
    assert small.train_log["n_val"] == 0 and small.train_log["epochs_run"] == 2 == small.train_log["best_epoch"]
    held = fit_classifier(data, subset, np.zeros(0, dtype=np.int64), base.model_copy(update={"min_holdout_per_class": 1}))
    assert held.train_log["validation"] == "held-out labelled patients"
    assert 0 < held.train_log["n_val"] < 24 and held.train_log["n_train"] + held.train_log["n_val"] == 24
    # a two-class head early-stopped on held-out patients takes its decision threshold from them
    cut = held.train_log["decision_threshold"]
    assert 0 < cut["p_class1"] < 1 and cut["n_heldout"] == held.train_log["n_val"]
    assert cut["balanced_accuracy_after_on_heldout"] >= cut["balanced_accuracy_before"] == held.metrics["balanced_accuracy"]
    assert "decision_threshold" not in small.train_log  # no held-out patients: the head is left as trained


def test_labelled_pairs_batched_fetch_matches_item_by_item(data_dir: Path) -> None:
    from torch.utils.data import DataLoader

    from medssl.train.full import _Labelled

    dataset = get_domain("imaging").make_dataset(data_dir, read_manifest(data_dir), None)
    rows = np.arange(3, 120, 2)
    y = np.arange(len(rows)) % 2
    pairs = _Labelled(dataset, rows, y)
    (x, t), = DataLoader(pairs, batch_size=len(rows))  # one batched fetch (dataset __getitems__)
    assert torch.equal(x, torch.stack([dataset[int(r)] for r in rows]))
    assert torch.equal(t, torch.as_tensor(y)) and x.shape == (len(rows), 1, 28, 28)


def test_full_mode_stops_early_when_validation_auroc_stops_improving(encoder_ckpt: Path, data_dir: Path) -> None:
    """Lightning EarlyStopping: with learning rates too small to learn (only batch-norm statistics
    drift), epoch 1's val AUROC is not beaten, so training ends after 1 + patience epochs and keeps
    epoch 1's weights."""
    from medssl.train.finetune import FinetuneConfig, fit_classifier, load_data
    from medssl.train.labels import draw_labelled_subset

    data = load_data(encoder_ckpt, data_dir)
    subset = draw_labelled_subset(data.patient_ids, data.labels, pool=data.train_pool(), fraction=0.5, seed=0)
    cfg = FinetuneConfig(mode="full", epochs=10, patience=2, min_steps_per_epoch=2, batch_size=16, scorer=None,
                         lr_head=1e-12, lr_encoder=1e-12)
    result = fit_classifier(data, subset, None, cfg)  # the manifest's val split validates
    log = result.train_log
    assert log["validation"] == "val" and log["epochs_run"] == 3 and log["best_epoch"] == 1
    aucs = [h["val_auroc"] for h in log["history"]]
    assert len(aucs) == 3 and aucs[0] >= max(aucs[1:])
    assert result.metrics["auroc"] == pytest.approx(aucs[0], abs=1e-4)  # the kept weights are epoch 1's


def test_labels_csv_of_train_cases_validates_on_the_manifest_val_labels(encoder_ckpt: Path, data_dir: Path,
                                                                         tmp_path: Path) -> None:
    """The usual case: a user labelled a few train cases. The manifest's val labels validate (and the
    run says so); a CSV that names val cases validates on its own labels instead."""
    manifest = read_manifest(data_dir)
    train = manifest[manifest["split"] == "train"]
    picked = pd.concat([train[train["label"].astype(str) == c].head(10) for c in ("0", "1")])
    csv = tmp_path / "labels.csv"
    picked[["case_id", "label"]].to_csv(csv, index=False)
    meta = load_checkpoint(_finetune(encoder_ckpt, data_dir, tmp_path / "run", "--labels", str(csv)), expect_kind="model").meta
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert meta["n_labelled"] == 20 and meta["label_source"] == str(csv)
    assert meta["validation"] == "val" and meta["validation_labels"] == "manifest"
    assert metrics["validation"]["n"] == 80 and metrics["validation_labels"] == "manifest"
    assert "baseline" in metrics  # the supervised baseline is measured on the same val rows

    val = manifest[manifest["split"] == "val"].head(12)
    flipped = val.assign(label=np.where(val["label"].astype(str) == "1", "0", "1"))  # only the CSV can say these
    pd.concat([picked, flipped])[["case_id", "label"]].to_csv(csv, index=False)
    _finetune(encoder_ckpt, data_dir, tmp_path / "run2", "--labels", str(csv))
    metrics = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert metrics["validation_labels"] == "labels CSV" and metrics["validation"]["n"] == 12


def test_auto_mode_on_images_fine_tunes_on_augmented_views(encoder_ckpt: Path, data_dir: Path, tmp_path: Path) -> None:
    """The imaging default (few-label recipe views_or_probe): with fewer than 10 labelled cases in a class, full
    fine-tuning on the pretraining views of the labelled images; with more, a linear probe. config.yaml keeps
    "auto" (a later run re-resolves it), the model file says what ran."""
    model_path = _finetune(encoder_ckpt, data_dir, tmp_path / "run", "--shots", "9", "--epochs", "3")
    meta = load_checkpoint(model_path, expect_kind="model").meta
    assert meta["mode"] == "full" and meta["recipes"]["few_label"] == "views_or_probe"
    assert meta["config"]["labelled_views"] is True and meta["metrics"]["n"] == 80
    assert not torch.equal(load_checkpoint(model_path).states["encoder"]["features.0.0.weight"],
                           load_checkpoint(encoder_ckpt).states["encoder"]["features.0.0.weight"])  # the encoder trained
    assert (tmp_path / "run" / "config.yaml").read_text().startswith("mode: auto")
    probe = load_checkpoint(_finetune(encoder_ckpt, data_dir, tmp_path / "run10", "--shots", "10"), expect_kind="model")
    assert probe.meta["mode"] == "linear" and probe.meta["config"]["labelled_views"] is False
    assert torch.equal(probe.states["encoder"]["features.0.0.weight"],
                       load_checkpoint(encoder_ckpt).states["encoder"]["features.0.0.weight"])  # frozen
    (tmp_path / "random.yaml").write_text("init: random\n")  # a random encoder has nothing to probe: views
    scratch = _finetune(encoder_ckpt, data_dir, tmp_path / "scratch", "--shots", "10", "--epochs", "2",
                        "--config", str(tmp_path / "random.yaml"))
    assert load_checkpoint(scratch).meta["mode"] == "full" and load_checkpoint(scratch).meta["config"]["labelled_views"]
