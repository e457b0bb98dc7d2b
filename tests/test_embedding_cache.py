"""The embedding cache of recipe fine-tunes (issue 17): a second `medssl finetune` of the same
checkpoint on the same DATA_DIR reads the frozen encoder's embeddings instead of computing them and
gives the same model; another encoder never reads them; a broken cache file is rebuilt."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from medssl.checkpoints import load_checkpoint
from medssl.cli import main
from medssl.train.embedding_cache import EmbeddingCache, embeddings_cache_root

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "transactions" / "ulb_creditcard_sample.csv"
PRESET = REPO / "configs" / "transactions_scarf.yaml"


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cards_cache")
    assert main(["ingest", "transactions", str(SAMPLE), "--out", str(root / "data"), "--id-col", "transaction_id",
                 "--label-col", "Class"]) == 0
    for seed in (0, 1):
        assert main(["pretrain", "--data", str(root / "data"), "--out", str(root / f"run{seed}"), "--config", str(PRESET),
                     "--epochs", "1", "--seed", str(seed)]) == 0
    return root


def _finetune(root: Path, run: str, out: Path) -> dict[str, torch.Tensor]:
    assert main(["finetune", "--checkpoint", str(root / run / "checkpoint.pt"), "--data", str(root / "data"),
                 "--out", str(out), "--label-fraction", "0.5", "--seed", "0"]) == 0
    return load_checkpoint(out / "model.pt").states["head"]


def _cache_files(root: Path) -> list[Path]:
    return sorted(embeddings_cache_root(root / "data").glob("*.npz"))


READ = "anomaly reference (train split): embeddings of"


def test_second_finetune_reads_the_cache_and_gives_the_same_model(cards: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    first = _finetune(cards, "run0", tmp_path / "a")
    files = _cache_files(cards)
    assert len(files) == 1
    assert READ not in capsys.readouterr().err  # the first run computes the train split's embeddings
    second = _finetune(cards, "run0", tmp_path / "b")
    err = capsys.readouterr().err  # the CLI logs to stderr
    n_train = err.split("scorer fitted on ")[1].split(" ")[0]
    assert f"{READ} {n_train} of {n_train} cases read from {files[0]}" in err
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    with np.load(files[0]) as z:
        assert z["done"].any() and z["emb"].shape[0] == z["done"].shape[0]


def test_another_encoder_never_reads_the_first_ones_embeddings(cards: Path, tmp_path: Path, capsys) -> None:
    _finetune(cards, "run0", tmp_path / "a")
    before = set(_cache_files(cards))
    capsys.readouterr()
    _finetune(cards, "run1", tmp_path / "c")
    assert READ not in capsys.readouterr().err
    assert len(set(_cache_files(cards)) - before) == 1


def test_a_broken_cache_file_is_reported_and_rebuilt(cards: Path, tmp_path: Path, capsys) -> None:
    reference = _finetune(cards, "run0", tmp_path / "a")
    for f in _cache_files(cards):
        f.write_bytes(b"not a numpy file")
    capsys.readouterr()
    again = _finetune(cards, "run0", tmp_path / "d")
    err = capsys.readouterr().err
    assert "unreadable" in err and "embedding again" in err and READ not in err
    for name in reference:
        assert torch.equal(reference[name], again[name]), name
    _finetune(cards, "run0", tmp_path / "e")
    assert READ in capsys.readouterr().err  # the rebuilt file is whole


def test_rows_round_trip_and_a_wrong_shape_is_not_read(tmp_path: Path, caplog) -> None:
    path = tmp_path / "c.npz"
    cache = EmbeddingCache(path, 5)
    assert cache.missing(np.array([0]))
    cache.put(np.array([1, 3]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert not cache.missing(np.array([3, 1])) and cache.missing(np.array([1, 2]))
    cache.save()
    again = EmbeddingCache(path, 5)
    assert torch.equal(again.get(np.array([3, 1])), torch.tensor([[3.0, 4.0], [1.0, 2.0]]))
    caplog.set_level(logging.WARNING)
    other = EmbeddingCache(path, 6)  # another manifest length: never mixed up
    assert other.missing(np.array([1])) and "unreadable" in caplog.text
