"""Domain recipes through the product path: what `medssl score` / `finetune` apply is the recipe,
recomputed here from its parts (scorer registry + recipe features) on the bundled card sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.anomaly import create_scorer
from medssl.checkpoints import load_checkpoint
from medssl.cli import main
from medssl.data import get_domain, read_manifest
from medssl.domains import anomaly_recipe, default_recipes, few_label_recipe
from medssl.errors import ConfigError, UnknownNameError
from medssl.models import load_model

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "transactions" / "ulb_creditcard_sample.csv"
PRESET = REPO / "configs" / "transactions_scarf.yaml"


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cards")
    assert main(["ingest", "transactions", str(SAMPLE), "--out", str(root / "data"), "--id-col", "transaction_id",
                 "--label-col", "Class", "--val-fraction", "0", "--test-fraction", "0.5"]) == 0
    assert main(["pretrain", "--data", str(root / "data"), "--out", str(root / "run"), "--config", str(PRESET),
                 "--epochs", "2"]) == 0
    return root, root / "run" / "checkpoint.pt"


def _inputs(data_dir: Path, ckpt: Path) -> tuple[pd.DataFrame, torch.Tensor, torch.Tensor]:
    manifest = read_manifest(data_dir)
    meta = load_checkpoint(ckpt).meta
    x = get_domain("transactions").make_dataset(data_dir, manifest, meta["preprocessing"]).items
    return manifest, x, torch.from_numpy(load_model(ckpt).embed(x))


def test_transactions_defaults_and_preset_name_the_recipes(cards) -> None:
    _, ckpt = cards
    assert default_recipes("transactions") == ("raw_pseudo_label", "raw_score_logreg")
    assert default_recipes("imaging") == ("embedding_knn", "views_or_probe")
    assert default_recipes("a_domain_without_recipes") == ("embedding_knn", "embedding_head")
    assert load_checkpoint(ckpt).meta["recipes"] == {"anomaly": "raw_pseudo_label", "few_label": "raw_score_logreg"}
    with pytest.raises(UnknownNameError, match="Did you mean 'raw_pseudo_label'"):
        anomaly_recipe("raw_pseudo_labl", "transactions")


def test_score_applies_the_anomaly_recipe_fitted_on_the_train_split(cards, capsys) -> None:
    root, ckpt = cards
    assert main(["score", "--model", str(ckpt), "--data", str(root / "data"), "--out", str(root / "s.parquet")]) == 0
    assert "anomaly recipe 'raw_pseudo_label' (ensemble)" in capsys.readouterr().err
    manifest, x, emb = _inputs(root / "data", ckpt)
    prep = load_checkpoint(ckpt).meta["preprocessing"]
    feats = anomaly_recipe("raw_pseudo_label", "transactions").features(x, emb, prep)
    n_raw = feats.shape[1] - emb.shape[1]
    assert n_raw == x.shape[1] == 29  # V1-V28 + Amount: no categorical columns to expand
    train = (manifest["split"] == "train").to_numpy()
    expected = create_scorer("ensemble", members=[("pseudo_label", {}), ("pseudo_label", {})],
                             columns=[(0, n_raw), None]).fit(feats[train]).score(feats)
    got = pd.read_parquet(root / "s.parquet").set_index("case_id").loc[manifest["case_id"], "anomaly_score"]
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-6, atol=1e-6)
    # the recipe ranks the sample's frauds (6 %) far above chance on the held-out half
    from sklearn.metrics import average_precision_score

    test = ~train
    assert average_precision_score(manifest["label"].astype(int)[test], expected[test]) > 0.4

    # --scorer NAME overrides the recipe's scorer, on the same features
    assert main(["score", "--model", str(ckpt), "--data", str(root / "data"), "--out", str(root / "k.parquet"),
                 "--scorer", "knn"]) == 0
    knn = create_scorer("knn", k=10, normalize="l2").fit(feats[train]).score(feats)
    got = pd.read_parquet(root / "k.parquet").set_index("case_id").loc[manifest["case_id"], "anomaly_score"]
    np.testing.assert_allclose(got.to_numpy(), knn, rtol=1e-5)
    assert main(["score", "--model", str(ckpt), "--data", str(root / "data"), "--out", str(root / "z.parquet"),
                 "--scorer", "knnn"]) != 0


def test_finetune_auto_fits_the_few_label_recipe_and_score_applies_it(cards, tmp_path) -> None:
    root, ckpt = cards
    manifest = read_manifest(root / "data")
    train = manifest[manifest["split"] == "train"]
    lab = pd.concat([train[train["label"] == "1"].head(12), train[train["label"] == "0"].head(60)])
    lab[["case_id", "label"]].to_csv(tmp_path / "labels.csv", index=False)
    assert main(["finetune", "--checkpoint", str(ckpt), "--data", str(root / "data"), "--out", str(tmp_path / "ft"),
                 "--labels", str(tmp_path / "labels.csv")]) == 0
    model_file = load_checkpoint(tmp_path / "ft" / "model.pt")
    meta = model_file.meta
    assert meta["mode"] == "recipe" and meta["head_input"] == "raw_score_logreg" and meta["n_labelled"] == 72
    assert meta["recipes"] == {"anomaly": "raw_pseudo_label", "few_label": "raw_score_logreg"}
    assert model_file.states["head"]["weight"].shape == (2, 29 + 1)  # raw columns + anomaly percentile
    assert main(["score", "--model", str(tmp_path / "ft" / "model.pt"), "--data", str(root / "data"),
                 "--out", str(tmp_path / "ft.parquet")]) == 0
    scores = pd.read_parquet(tmp_path / "ft.parquet").set_index("case_id").loc[manifest["case_id"]]
    # recompute: the stored scorer's percentile + the recipe's features, through the stored head
    model = load_model(tmp_path / "ft" / "model.pt")
    _, x, emb = _inputs(root / "data", ckpt)
    prep = meta["preprocessing"]
    pct = model.scorer.percentile(model.scorer.score(anomaly_recipe("raw_pseudo_label", "transactions").features(x, emb, prep)))
    feats = few_label_recipe("raw_score_logreg", "transactions").features(x, emb, pct, prep)
    w, b = model_file.states["head"]["weight"].double().numpy(), model_file.states["head"]["bias"].double().numpy()
    logits = feats @ w.T + b
    p1 = 1.0 / (1.0 + np.exp(-(logits[:, 1] - logits[:, 0])))
    got = np.where(scores["predicted_label"] == "1", scores["predicted_proba"], 1 - scores["predicted_proba"])
    np.testing.assert_allclose(got, p1, rtol=1e-4, atol=1e-6)
    # the Python API's loaded model computes the same on in-memory inputs (dataset items as an array)
    np.testing.assert_allclose(model.predict_proba(x.numpy())[:, 1], p1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.anomaly_score(x.numpy()), scores["anomaly_score"].to_numpy(), rtol=1e-6)
    assert model.embed(x.numpy()).shape == (len(manifest), 64)
    with pytest.raises(ConfigError, match=r"do not fit this model: it reads items of shape \(29,\)"):
        model.predict_proba(x.numpy()[:, :10])
    from sklearn.metrics import average_precision_score

    test = (manifest["split"] == "test").to_numpy()
    assert average_precision_score(manifest["label"].astype(int)[test], p1[test]) > 0.5
    # --mode linear still gives the classic probe on the embeddings
    (tmp_path / "ft.yaml").write_text("scorer: knn\nscorer_k: 3\n")  # the anomaly scorer swapped, its k honoured
    assert main(["finetune", "--checkpoint", str(ckpt), "--data", str(root / "data"), "--out", str(tmp_path / "lin"),
                 "--labels", str(tmp_path / "labels.csv"), "--mode", "linear", "--config", str(tmp_path / "ft.yaml")]) == 0
    lin = load_checkpoint(tmp_path / "lin" / "model.pt")
    assert lin.meta["head_input"] == "embedding" and lin.states["head"]["weight"].shape == (2, 64)
    assert lin.meta["scorer"] == {"name": "knn", "kwargs": {"normalize": "l2", "k": 3}}


def test_a_model_file_from_before_recipes_still_scores_its_embeddings(cards, tmp_path) -> None:
    """A fine-tuned transactions file written before recipes existed (no meta "recipes"/"head_input",
    a kNN scorer fitted on embeddings) keeps scoring as it was built to: on the embeddings."""
    from medssl.checkpoints import Checkpoint, save_checkpoint

    root, ckpt = cards
    manifest, x, emb = _inputs(root / "data", ckpt)
    meta = {k: v for k, v in load_checkpoint(ckpt).meta.items() if k != "recipes"}
    train = (manifest["split"] == "train").to_numpy()
    scorer = create_scorer("knn", k=5).fit(emb.numpy()[train])
    head = torch.nn.Linear(64, 2)
    meta.update(classes=["0", "1"], mode="linear", scorer={"name": "knn", "kwargs": {"k": 5}})
    old = save_checkpoint(tmp_path / "old.pt", Checkpoint(
        kind="model", meta=meta, states={"encoder": load_checkpoint(ckpt).states["encoder"], "head": head.state_dict()},
        tensors={f"scorer/{k}": v for k, v in scorer.state_dict().items()}))
    assert main(["score", "--model", str(old), "--data", str(root / "data"), "--out", str(tmp_path / "old.parquet")]) == 0
    got = pd.read_parquet(tmp_path / "old.parquet").set_index("case_id").loc[manifest["case_id"], "anomaly_score"]
    np.testing.assert_allclose(got.to_numpy(), scorer.score(emb.numpy()), rtol=1e-5)


def test_scorer_spec_overrides_and_bounds_k() -> None:
    knn = anomaly_recipe("embedding_knn", "imaging")
    assert knn.scorer_spec(500, 32, 32) == ("knn", {"k": 10, "normalize": "l2"})
    assert knn.scorer_spec(500, 32, 32, knn_k=3) == ("knn", {"k": 3, "normalize": "l2"})
    assert knn.scorer_spec(5, 32, 32) == ("knn", {"k": 4, "normalize": "l2"})  # never more than n - 1
    assert knn.scorer_spec(500, 32, 32, override="ecod") == ("ecod", {})
    raw = anomaly_recipe("raw_pseudo_label", "transactions")
    name, kwargs = raw.scorer_spec(500, 64, 93)
    assert name == "ensemble" and kwargs["columns"] == [(0, 29), None]
    assert raw.scorer_spec(500, 64, 93, override="knn") == ("knn", {"normalize": "l2", "k": 10})


def test_api_ingest_takes_column_lists_as_the_cli_does(shared_data, tmp_path) -> None:
    import medssl

    pd.read_csv(shared_data / "transactions" / "paysim_sample.csv").head(300).to_csv(tmp_path / "p.csv", index=False)
    for value in ("type, amount", ["type", "amount"]):
        out = tmp_path / f"d{len(str(value))}"
        medssl.ingest("transactions", tmp_path / "p.csv", out, categorical=value, label_col="isFraud")
        schema = __import__("json").loads((out / "schema.json").read_text())
        assert schema["categorical"] == ["type", "amount"]
    with pytest.raises(ConfigError, match="unknown option"):
        medssl.ingest("transactions", tmp_path / "p.csv", tmp_path / "x", label_column="isFraud")
    with pytest.raises(ConfigError, match="epohcs: Extra inputs are not permitted"):  # a typo in a dict config
        medssl.pretrain(tmp_path / "d", tmp_path / "run", config={"epohcs": 3})
