"""The two-class decision threshold: chosen by balanced accuracy, folded into the head's bias."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from torch import nn

from medssl.train.threshold import balanced_threshold, shift_head_to_threshold


def test_a_well_ranking_but_one_sided_head_gets_a_balanced_cut_off() -> None:
    rng = np.random.default_rng(0)
    emb = torch.tensor(rng.normal(size=(200, 4)), dtype=torch.float32)
    y = (emb[:, 0] > 0.3).numpy().astype(int)
    head = nn.Linear(4, 2)
    with torch.no_grad():  # ranks by feature 0, but class 1 wins only far out: almost everyone is class 0
        head.weight.zero_()
        head.weight[1, 0] = 3.0
        head.bias.copy_(torch.tensor([6.0, 0.0]))
        p1 = torch.softmax(head(emb), 1)[:, 1].numpy()
    assert balanced_accuracy_score(y, p1 >= 0.5) < 0.6 and roc_auc_score(y, p1) > 0.99
    t = balanced_threshold(y, p1)
    assert t is not None and not np.any(p1 == t)
    # the cut-off is the best one: no other cut-off on these scores does better
    best = max(balanced_accuracy_score(y, p1 >= c) for c in np.unique(p1))
    assert balanced_accuracy_score(y, p1 >= t) == pytest.approx(best)
    shift_head_to_threshold(head, t)
    with torch.no_grad():
        logits = head(emb)
    assert np.array_equal(logits.argmax(1).numpy(), (p1 >= t).astype(int))  # argmax is the cut-off
    new_p1 = torch.softmax(logits, 1)[:, 1].numpy()
    assert roc_auc_score(y, new_p1) == pytest.approx(roc_auc_score(y, p1))  # ranking unchanged
    assert balanced_accuracy_score(y, logits.argmax(1).numpy()) > 0.95


def test_one_class_or_a_bad_head_is_refused_or_left_alone() -> None:
    assert balanced_threshold(np.ones(5), np.linspace(0, 1, 5)) is None
    with pytest.raises(ValueError, match="two-class head"):
        shift_head_to_threshold(nn.Linear(3, 3), 0.4)
    with pytest.raises(ValueError, match="two-class head"):
        shift_head_to_threshold(nn.Linear(3, 2, bias=False), 0.4)
