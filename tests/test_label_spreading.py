"""Label spreading (``medssl.train.label_spreading``) on real handwritten digits (UCI, bundled with scikit-learn)."""

from __future__ import annotations

import numpy as np
import torch
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from medssl.errors import ConfigError
from medssl.train.label_spreading import spread_labels


@pytest.fixture(scope="module")
def threes_and_eights() -> tuple[np.ndarray, np.ndarray]:
    """357 real 8x8 digit images (64 features): 3 -> class 0, 8 -> class 1."""
    x, y = load_digits(return_X_y=True)
    keep = (y == 3) | (y == 8)
    return x[keep], (y[keep] == 8).astype(np.int64)


def _two_per_class(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lab = np.concatenate([rng.choice(np.flatnonzero(y == c), 2, replace=False) for c in (0, 1)])
    return lab, np.setdiff1d(np.arange(len(y)), lab)


def test_spreading_two_labels_per_class_beats_a_probe_on_the_same_labels(threes_and_eights) -> None:
    x, y = threes_and_eights
    spread_auc, probe_auc, accuracy = [], [], []
    for seed in range(5):
        lab, unl = _two_per_class(y, seed)
        proba = spread_labels(x[lab], y[lab], x[unl], 2, k=10, alpha=0.2)
        assert proba.shape == (len(unl), 2) and np.allclose(proba.sum(axis=1), 1) and (proba >= 0).all()
        probe = LogisticRegression(C=0.1, max_iter=2000).fit(x[lab], y[lab])
        spread_auc.append(roc_auc_score(y[unl], proba[:, 1]))
        probe_auc.append(roc_auc_score(y[unl], probe.predict_proba(x[unl])[:, 1]))
        accuracy.append((proba.argmax(axis=1) == y[unl]).mean())
    assert np.mean(spread_auc) > np.mean(probe_auc) + 0.01  # measured: 0.99 vs 0.97
    assert min(spread_auc) > 0.95 and np.mean(accuracy) > 0.9


def test_labels_of_one_class_go_everywhere_and_empty_unlabelled_is_fine(threes_and_eights) -> None:
    x, y = threes_and_eights
    lab = np.flatnonzero(y == 1)[:3]
    proba = spread_labels(x[lab], np.array([1, 1, 1]), x[:50], 3, k=5)
    assert proba.shape == (50, 3) and np.allclose(proba[:, 1], 1)  # the only class seen; other columns 0
    assert spread_labels(x[:4], np.array([0, 1, 0, 1]), np.zeros((0, 64)), 2).shape == (0, 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"emb_unlabelled": np.zeros((5, 3))}, "(L, F) and (U, F)"),
        ({"y": np.array([0, 1, 1])}, "one label per labelled case"),
        ({"y": np.array([0, 1, 2, 1])}, "class ids in [0, 2)"),
        ({"alpha": 1.0}, "spread_alpha must be in (0, 1)"),
        ({"k": 0}, "spread_k must be at least 1"),
    ],
)
def test_bad_input_raises_config_error(kwargs: dict, message: str) -> None:
    args = {"emb_labelled": np.ones((4, 2)), "y": np.array([0, 1, 0, 1]), "emb_unlabelled": np.ones((5, 2)), "n_classes": 2}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        spread_labels(**{**args, **kwargs})


def test_class_mass_rescales_each_class_to_its_labelled_share(threes_and_eights) -> None:
    x, y = threes_and_eights
    lab = np.concatenate([np.flatnonzero(y == 0)[:2], np.flatnonzero(y == 1)[:8]])  # labelled shares 0.2 / 0.8
    unl = np.setdiff1d(np.arange(len(y)), lab)
    plain = spread_labels(x[lab], y[lab], x[unl], 2, k=10)
    scaled = plain * (np.array([0.2, 0.8]) / plain.sum(axis=0))  # Zhu et al. 2003, by hand
    expected = scaled / scaled.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(spread_labels(x[lab], y[lab], x[unl], 2, k=10, class_mass=True), expected, rtol=1e-10)


def test_linear_probe_with_fewer_patients_than_folds() -> None:
    """Many labelled cases but only 4 patients (e.g. ECG beats of 4 records): the CV uses at most
    as many folds as patients instead of failing in scikit-learn."""
    from medssl.train.probe import linear_probe

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    emb = rng.normal(size=(80, 8)) + y[:, None]
    groups = np.tile(np.array(["r1", "r2", "r3", "r4"]), 20)
    head = linear_probe(emb, y, groups, 2, seed=0)
    logits = head(torch.as_tensor(emb, dtype=torch.float32)).detach().numpy()
    assert ((logits[:, 1] > logits[:, 0]).astype(int) == y).mean() > 0.8
